"""XGBoost and LightGBM, the boosters people put next to scikit-learn: XGBClassifier, XGBRegressor, LGBMClassifier and
LGBMRegressor, alone or as a Pipeline's step after a ColumnTransformer, from a pickle of the wrapper and from the
boosters' own files (XGBoost's .json/.ubj, LightGBM's text model). Each answers as its library's own predict; the
handler loads a booster only through its library's own loader from its own file, never from a pickle."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import iris_tools.model_import.__main__ as model_import
from shared.artifact import ARTIFACT_FILE, MANIFEST_FILE
from shared.safe_pickle import survey

rng = np.random.default_rng(3)
X = rng.normal(size=(300, 4))
CLASSES = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
VALUES = X @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=300) * 0.1
FRAME = pd.DataFrame({"tenure": rng.uniform(0, 70, 300), "plan": rng.choice(["basic", "pro", "team"], 300),
                      "monthly charge": rng.uniform(10, 100, 300)})
FRAME_CLASSES = ((FRAME["tenure"] > 30) ^ (FRAME["plan"] == "pro")).astype(int)


def columns() -> ColumnTransformer:
    return ColumnTransformer([("plan", OneHotEncoder(), ["plan"]),
                              ("numbers", StandardScaler(), ["tenure", "monthly charge"])])


def run_import(tmp_path: Path, file: Path, name: str, *options: str) -> tuple[int, str]:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = model_import.main([str(file), name, "--functions-dir", str(tmp_path / "functions"), *options])
    return status, errors.getvalue()


def imported(tmp_path: Path, file: Path, name: str, *options: str) -> Path:
    status, said = run_import(tmp_path, file, name, *options)
    assert status == 0, said
    return tmp_path / "functions" / name


WRAPPERS = {
    "xgb-classifier": lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, CLASSES),
    "xgb-regressor": lambda: xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, VALUES),
    "lgbm-classifier": lambda: lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, CLASSES),
    "lgbm-regressor": lambda: lightgbm.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, VALUES),
    "lgbm-string-classes": lambda: lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(
        X, np.array(["low", "mid", "high"])[CLASSES]),
}


def assert_same(answers: list, expected: np.ndarray) -> None:
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(answers, expected, rtol=1e-9, atol=0)
    else:
        assert answers == expected.tolist()
        assert [type(a) for a in answers] == [type(e) for e in expected.tolist()]


@pytest.mark.parametrize("case", sorted(WRAPPERS))
def test_a_pickled_wrapper_answers_as_its_library_predicts_on_every_route(case: str, tmp_path: Path,
                                                                          client_for: Callable) -> None:
    model = WRAPPERS[case]()
    joblib.dump(model, tmp_path / "model.joblib")
    folder = imported(tmp_path, tmp_path / "model.joblib", "boosted")
    client = client_for(folder)
    expected = model.predict(X[:60])
    assert_same(client.post("/", json={"instances": X[:60].tolist()}).get_json()["predictions"], expected)
    one = client.get("/?" + "&".join(f"x{i}={v!r}" for i, v in enumerate(X[0].tolist()))).get_json()
    assert_same([one["prediction" if expected.dtype.kind == "f" else "predicted_class"]], expected[:1])
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    library = case.split("-")[0].replace("lgbm", "lightgbm").replace("xgb", "xgboost")
    assert [entry["library"] for entry in manifest["boosters"]] == [library]
    # No booster is ever unpickled by the handler: the artifact names none of the libraries' classes.
    assert not [name for name in survey((folder / ARTIFACT_FILE).read_bytes()) if name.startswith(library)]
    distribution = "xgboost-cpu" if library == "xgboost" else "lightgbm"
    assert (folder / "requirements-model.txt").read_text().startswith(f"{distribution}==")
    assert manifest["allow_nan"] is True  # both libraries take a missing value
    gapped = X[:5].copy()
    gapped[:, 1] = np.nan
    rows = [[None if v != v else v for v in row] for row in gapped.tolist()]
    assert_same(client.post("/", json={"instances": rows}).get_json()["predictions"], model.predict(gapped))


@pytest.mark.parametrize("booster", [
    lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=3),
    lambda: lightgbm.LGBMRegressor(n_estimators=20, verbose=-1),
], ids=["xgboost-classifier", "lightgbm-regressor"])
def test_a_booster_after_a_column_transformer_answers_every_route_with_the_datas_names(
        booster: Callable, tmp_path: Path, client_for: Callable) -> None:
    target = FRAME_CLASSES if "XGB" in type(booster()).__name__ else FRAME["tenure"] * 2 + FRAME["monthly charge"]
    pipeline = make_pipeline(columns(), booster()).fit(FRAME, target)
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    client = client_for(imported(tmp_path, tmp_path / "pipeline.joblib", "boosted_pipeline"))
    expected = pipeline.predict(FRAME.iloc[:40])
    records = FRAME.iloc[:40].to_dict("records")
    assert_same(client.post("/", json={"instances": records}).get_json()["predictions"], expected)
    inputs = [{"name": name, "datatype": "BYTES" if name == "plan" else "FP64", "shape": [40],
               "data": FRAME[name].iloc[:40].tolist()} for name in FRAME.columns]
    outputs = [{"name": "prediction" if expected.dtype.kind == "f" else "class_name"}]
    v2 = client.post("/v2/models/boosted_pipeline/infer", json={"inputs": inputs, "outputs": outputs}).get_json()
    assert_same(v2["outputs"][0]["data"], expected)


def test_the_boosters_own_files_are_read_by_their_own_loaders(tmp_path: Path, client_for: Callable) -> None:
    classifier = WRAPPERS["xgb-classifier"]()
    regressor = WRAPPERS["lgbm-regressor"]()
    classifier.get_booster().save_model(str(tmp_path / "booster.json"))
    classifier.save_model(str(tmp_path / "wrapper.ubj"))
    regressor.booster_.save_model(str(tmp_path / "model.txt"))
    status, said = run_import(tmp_path, tmp_path / "booster.json", "unnamed")
    assert status == 1 and "names no features: give FEATURES= with its 4 names" in said
    names = ("--features", "a,b,c,d")
    for file, name, model in (("booster.json", "from_json", classifier), ("wrapper.ubj", "from_ubj", classifier),
                              ("model.txt", "from_text", regressor)):
        client = client_for(imported(tmp_path, tmp_path / file, name, *names))
        assert_same(client.post("/", json={"instances": X[:50].tolist()}).get_json()["predictions"],
                    model.predict(X[:50]))
        assert client.get("/?a=0.1&b=0.2&c=0.3&d=0.4").status_code == 200
    named = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(pd.DataFrame(X, columns=list("pqrs")), VALUES)
    named.booster_.save_model(str(tmp_path / "named.txt"))
    client = client_for(imported(tmp_path, tmp_path / "named.txt", "named"))
    assert client.get("/?p=0.1&q=0.2&r=0.3&s=0.4").status_code == 200


def test_a_booster_file_changed_after_import_stops_the_function(tmp_path: Path, client_for: Callable,
                                                                capsys: pytest.CaptureFixture) -> None:
    joblib.dump(WRAPPERS["xgb-classifier"](), tmp_path / "model.joblib")
    folder = imported(tmp_path, tmp_path / "model.joblib", "changed")
    other = xgboost.XGBClassifier(n_estimators=3).fit(X, CLASSES)
    other.save_model(str(folder / "booster-0.ubj"))
    with pytest.raises(SystemExit):
        client_for(folder)
    error = capsys.readouterr().err
    assert "SHA-256 check failed" in error and "booster-0.ubj" in error


def test_a_ranker_is_refused_naming_its_objective(tmp_path: Path) -> None:
    ranker = xgboost.XGBRanker(n_estimators=3).fit(X, CLASSES, qid=np.repeat(np.arange(30), 10))
    ranker.get_booster().save_model(str(tmp_path / "ranker.json"))
    status, said = run_import(tmp_path, tmp_path / "ranker.json", "ranker", "--features", "a,b,c,d")
    assert status == 1 and "objective 'rank:" in said and "nothing was written" in said
