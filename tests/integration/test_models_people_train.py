"""The models a tabular ML user ships, beyond scikit-learn's list: a saved search (the whole GridSearchCV, not only
its best_estimator_), a DataFrame whose column names have spaces, dots and non-ASCII letters, missing values for a
model that takes them (an imputer first, a HistGradientBoosting model) and a 400 naming the feature for one that does
not, classes that keep their JSON type (integers, booleans) on every route, in labels and in outcomes."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import make_pipeline

import iris_tools.model_import.__main__ as model_import
from iris_tools.quality.local_store import LocalStore
from shared.prediction_log import LineWriter
from tests.helpers import post_feedback

rng = np.random.default_rng(7)
X = rng.normal(size=(80, 3))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0)  # classes 0, 1 and 2
NAMES = ["mean radius", "worst.texture", "größe (cm)"]


def imported(tmp_path: Path, estimator: object, name: str) -> Path:
    """`make import-model`'s own entry point on a joblib file of `estimator`; the version's folder."""
    file = tmp_path / f"{name}.joblib"
    joblib.dump(estimator, file)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = model_import.main([str(file), name, "--functions-dir", str(tmp_path / "functions")])
    assert status == 0, errors.getvalue()
    return tmp_path / "functions" / name


@pytest.mark.parametrize("search", [
    GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=3),
    RandomizedSearchCV(make_pipeline(SimpleImputer(), Ridge()), {"ridge__alpha": [0.1, 1.0, 10.0]}, n_iter=2, cv=3,
                       random_state=0),
], ids=["grid", "randomized"])
def test_a_whole_search_object_is_served_as_its_best_estimator_answers(tmp_path: Path, client_for: Callable,
                                                                       search: object) -> None:
    target = y if isinstance(search, GridSearchCV) else X @ [1.0, 2.0, 3.0]
    search.fit(X, target)
    assert "cv_results_" in vars(search)  # masked arrays and all: what people save
    folder = imported(tmp_path, search, "searched")
    answers = client_for(folder).post("/", json={"instances": X[:20].tolist()}).get_json()["predictions"]
    expected = search.predict(X[:20]).tolist()
    if isinstance(search, GridSearchCV):
        assert answers == expected and all(type(a) is int for a in answers)
    else:
        np.testing.assert_allclose(answers, expected, rtol=1e-9, atol=0)


def test_column_names_as_the_data_has_them_work_on_every_route(tmp_path: Path, client_for: Callable) -> None:
    frame = pd.DataFrame(X, columns=NAMES)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, y)
    folder = imported(tmp_path, forest, "radius")
    client = client_for(folder)
    expected = forest.predict(frame.iloc[:10]).tolist()
    records = frame.iloc[:10].to_dict("records")
    posted = client.post("/", json={"instances": records}).get_json()["predictions"]
    gets = [client.get("/?" + "&".join(f"{quote(k)}={v!r}" for k, v in row.items())).get_json() for row in records]
    inputs = [{"name": name, "datatype": "FP64", "shape": [10], "data": frame[name].iloc[:10].tolist()}
              for name in NAMES]
    v2 = client.post("/v2/models/radius/infer", json={"inputs": inputs, "outputs": [{"name": "class_name"}]})
    assert posted == [g["predicted_class"] for g in gets] == v2.get_json()["outputs"][0]["data"] == expected
    assert gets[0]["mean radius"] == records[0]["mean radius"] and "größe (cm)" in gets[0]
    assert [i["name"] for i in client.get("/v2/models/radius").get_json()["inputs"]] == NAMES
    unknown = client.get("/?" + "&".join(f"{quote(k)}=1" for k in ["mean radius", "worst.texture", "size"]))
    assert unknown.status_code == 400 and unknown.get_json()["field"] == "size"


def with_gaps(values: np.ndarray) -> np.ndarray:
    gapped = values.copy()
    gapped[::4, 0] = np.nan
    gapped[1::5, 2] = np.nan
    return gapped


@pytest.mark.parametrize("model", [
    make_pipeline(SimpleImputer(strategy="median"), LogisticRegression()),
    HistGradientBoostingClassifier(max_iter=20, random_state=0),
], ids=["imputer-pipeline", "hist-gradient-boosting"])
def test_a_missing_value_reaches_a_model_that_takes_it_from_every_route(tmp_path: Path, client_for: Callable,
                                                                        model: object) -> None:
    gapped = with_gaps(X)
    model.fit(gapped, y)
    folder = imported(tmp_path, model, "gaps")
    assert json.loads((folder / "model.json").read_text())["allow_nan"] is True
    client = client_for(folder)
    expected = model.predict(gapped[:12]).tolist()
    rows = [[None if v != v else v for v in row] for row in gapped[:12].tolist()]
    posted = client.post("/", json={"instances": rows}).get_json()["predictions"]
    named = client.post("/", json={"instances": [dict(zip(["x0", "x1", "x2"], row)) for row in rows]})
    gets = [client.get("/?" + "&".join(f"x{i}={'' if v is None else repr(v)}" for i, v in enumerate(row))).get_json()
            for row in rows]
    raw = np.ascontiguousarray(gapped[:12].T).astype("<f8")
    header = json.dumps({"inputs": [{"name": f"x{i}", "datatype": "FP64", "shape": [12],
                                     "parameters": {"binary_data_size": 96}} for i in range(3)],
                         "outputs": [{"name": "class_name"}]}).encode()
    binary = client.post("/v2/models/gaps/infer", data=header + raw.tobytes(),
                         headers={"Inference-Header-Content-Length": str(len(header))})
    as_null = client.post("/v2/models/gaps/infer", json={
        "inputs": [{"name": f"x{i}", "datatype": "FP64", "shape": [12], "data": [row[i] for row in rows]}
                   for i in range(3)], "outputs": [{"name": "class_name"}]})
    assert posted == named.get_json()["predictions"] == [g["predicted_class"] for g in gets] == expected
    assert binary.get_json()["outputs"][0]["data"] == as_null.get_json()["outputs"][0]["data"] == expected
    assert gets[0]["x0"] is None  # the missing value answered back as JSON's null
    infinite = client.post("/", json={"instances": [[1e400, 0, 0]]})
    assert infinite.status_code == 400


def test_a_missing_value_for_a_model_that_does_not_take_it_is_a_400_naming_the_feature(
        tmp_path: Path, client_for: Callable) -> None:
    folder = imported(tmp_path, LogisticRegression().fit(X, y), "strict")
    client = client_for(folder)
    batch = client.post("/", json={"instances": [[0.1, None, 0.3]]})
    get = client.get("/?x0=0.1&x1=0.2&x2=")
    v2 = client.post("/v2/models/strict/infer", json={"inputs": [
        {"name": f"x{i}", "datatype": "FP64", "shape": [1], "data": [None if i == 1 else 0.5]} for i in range(3)]})
    assert (batch.status_code, batch.get_json()["field"]) == (400, "instances[0][1]")
    assert (get.status_code, get.get_json()["field"], get.get_json()["code"]) == (400, "x2", "missing_value")
    assert (v2.status_code, v2.get_json()["field"], v2.get_json()["code"]) == (400, "inputs[1].data", "missing_value")


def test_integer_and_boolean_classes_keep_their_type_on_every_route_and_in_labels(tmp_path: Path,
                                                                                  client_for: Callable) -> None:
    numbers = imported(tmp_path, LogisticRegression().fit(X, y), "numbers")
    flags = imported(tmp_path, RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y > 0), "flags")
    for folder, kind, datatype in ((numbers, int, "INT64"), (flags, bool, "BOOL")):
        client = client_for(folder)
        model = joblib.load(tmp_path / f"{folder.name}.joblib")
        expected = model.predict(X[:8]).tolist()
        posted = client.post("/", json={"instances": X[:8].tolist()}).get_json()["predictions"]
        one = client.get("/?" + "&".join(f"x{i}={v!r}" for i, v in enumerate(X[0].tolist()))).get_json()
        v2 = client.post(f"/v2/models/{folder.name}/infer", json={
            "inputs": [{"name": f"x{i}", "datatype": "FP64", "shape": [8], "data": X[:8, i].tolist()} for i in range(3)],
            "outputs": [{"name": "class_name"}, {"name": "predicted_class"}]}).get_json()["outputs"]
        assert posted == expected and all(type(a) is kind for a in posted)
        assert one["predicted_class"] == expected[0] and type(one["predicted_class"]) is kind
        assert (v2[0]["datatype"], v2[0]["data"]) == (datatype, expected)
        metadata = client.get("/metadata").get_json()["model"]
        assert all(type(c) is kind for c in metadata["class_names"])
    client = client_for(numbers)
    assert post_feedback(client, [{"id": "a", "label": 0}, {"id": "b", "label": "2"}]).status_code == 200
    for wrong in (True, "zero", 7, 0.5):
        refused = post_feedback(client, {"id": "c", "label": wrong})
        assert refused.status_code == 400 and refused.get_json()["field"] == "label", wrong
    flag_client = client_for(flags)
    assert post_feedback(flag_client, {"id": "d", "label": True}).status_code == 200
    assert post_feedback(flag_client, {"id": "d", "label": 1}).status_code == 400


def test_outcomes_judge_integer_classes_by_the_labels_that_came_back(tmp_path: Path, client_for: Callable,
                                                                      capfd: pytest.CaptureFixture) -> None:
    """The handler's own log lines, read by the outcome store: an integer class predicted and labelled as 0 joins."""
    folder = imported(tmp_path, LogisticRegression().fit(X, y), "numbers")
    client = client_for(folder, K_SERVICE="numbers", K_REVISION="numbers-00001-abc", LOG_PREDICTIONS="1")
    model = joblib.load(tmp_path / "numbers.joblib")
    capfd.readouterr()
    ids, truths = [], []
    for i in range(30):
        answer = client.get("/?" + "&".join(f"x{j}={v!r}" for j, v in enumerate(X[i].tolist())),
                            headers={"X-Request-Id": f"r{i}"})
        ids.append(answer.headers["X-Answer-Id"])
        truths.append(int(y[i]))
    post_feedback(client, [{"id": i, "label": t} for i, t in zip(ids, truths)])
    for writer in list(LineWriter._by_descriptor.values()):
        writer.flush()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "numbers-00001-abc.log").write_text(capfd.readouterr().out)
    found = LocalStore(logs, tmp_path / "store").outcomes("numbers", time.time() - 60, time.time() + 60)
    outcome = found.revisions["numbers-00001-abc"]
    right = int((model.predict(X[:30]) == y[:30]).sum())
    assert (outcome.predictions, outcome.labelled, outcome.correct) == (30, 30, right)
    assert set(outcome.mix) <= {"0", "1", "2"} and found.unmatched == 0


def test_a_string_column_with_missing_values_reaches_its_imputer(tmp_path: Path, client_for: Callable) -> None:
    """Real tables miss strings too: a most-frequent imputer before the OneHotEncoder takes a null plan."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": rng.choice(["basic", "pro", None], 80), "tenure": X[:, 0]})
    columns = ColumnTransformer([("plan", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                        OneHotEncoder(handle_unknown="ignore")), ["plan"]),
                                 ("tenure", SimpleImputer(), ["tenure"])])
    model = make_pipeline(columns, LogisticRegression()).fit(frame, y)
    client = client_for(imported(tmp_path, model, "gappy_strings"))
    rows = [{"plan": None, "tenure": 0.5}, {"plan": "pro", "tenure": None}, {"plan": "basic", "tenure": -1.0}]
    expected = model.predict(pd.DataFrame(rows).astype({"tenure": float})).tolist()
    assert client.post("/", json={"instances": rows}).get_json()["predictions"] == expected
    v2 = client.post("/v2/models/gappy_strings/infer", json={"inputs": [
        {"name": "plan", "datatype": "BYTES", "shape": [3], "data": [r["plan"] for r in rows]},
        {"name": "tenure", "datatype": "FP64", "shape": [3], "data": [r["tenure"] for r in rows]}],
        "outputs": [{"name": "class_name"}]})
    assert v2.get_json()["outputs"][0]["data"] == expected


@pytest.mark.parametrize("model", [
    HistGradientBoostingClassifier(max_iter=10, random_state=0),
    VotingClassifier([("linear", LogisticRegression()), ("forest", RandomForestClassifier(n_estimators=5,
                                                                                          random_state=0))]),
], ids=["hist-gradient-boosting", "voting"])
def test_a_skops_file_of_an_ensemble_is_imported_and_served(tmp_path: Path, client_for: Callable,
                                                            model: object) -> None:
    import skops.io

    model.fit(X, y)
    skops.io.dump(model, tmp_path / "model.skops")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = model_import.main([str(tmp_path / "model.skops"), "ensemble", "--functions-dir",
                                    str(tmp_path / "functions")])
    assert status == 0, errors.getvalue()
    answers = client_for(tmp_path / "functions" / "ensemble").post("/", json={"instances": X[:20].tolist()})
    assert answers.get_json()["predictions"] == model.predict(X[:20]).tolist()


def test_rows_the_model_itself_refuses_are_a_422_with_its_reason(tmp_path: Path, client_for: Callable) -> None:
    from sklearn.neighbors import RadiusNeighborsClassifier

    folder = imported(tmp_path, RadiusNeighborsClassifier(radius=0.5).fit(X, y), "near")
    client = client_for(folder)
    far = client.post("/", json={"instances": [[40.0, 40.0, 40.0]]})
    one = client.get("/?x0=40&x1=40&x2=40")
    assert (far.status_code, far.get_json()["code"], one.status_code) == (422, "model_refused_rows", 422)
    assert "No neighbors found" in far.get_json()["error"]
    assert client.post("/", json={"instances": [X[0].tolist()]}).status_code == 200


def logged(client: object, capfd: pytest.CaptureFixture, rows: list) -> dict:
    """The prediction log line of one POST, as the handler writes it."""
    capfd.readouterr()
    assert client.post("/", json={"instances": rows}).status_code == 200
    for writer in list(LineWriter._by_descriptor.values()):
        writer.flush()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"kind":"prediction"' in line]
    assert len(lines) == 1
    return lines[0]


def test_the_log_keeps_a_regressors_numbers_a_classs_text_a_multi_outputs_lists_and_nulls(
        tmp_path: Path, client_for: Callable, capfd: pytest.CaptureFixture) -> None:
    """What the outcome store reads: a number is a regressor's value, a string a class (its text), a list neither."""
    values = X @ [1.0, 2.0, 3.0]
    regressor = client_for(imported(tmp_path, Ridge().fit(X, values), "numbers"), LOG_PREDICTIONS="1")
    classes = client_for(imported(tmp_path, LogisticRegression().fit(X, y), "integers"), LOG_PREDICTIONS="1")
    both = client_for(imported(tmp_path, Ridge().fit(X, np.column_stack([values, -values])), "two"),
                      LOG_PREDICTIONS="1")
    gaps = client_for(imported(tmp_path, HistGradientBoostingClassifier(max_iter=5).fit(with_gaps(X), y), "gaps"),
                      LOG_PREDICTIONS="1")
    line = logged(regressor, capfd, X[:2].tolist())
    assert all(type(value) is float for value in line["predictions"])
    assert all(type(value) is str for value in logged(classes, capfd, X[:2].tolist())["predictions"])
    assert all(type(value) is list and len(value) == 2 for value in logged(both, capfd, X[:2].tolist())["predictions"])
    assert logged(gaps, capfd, [[None, 0.5, 0.5]])["inputs"] == [[None, 0.5, 0.5]]
