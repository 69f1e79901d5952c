"""A user's own model: `make import-model` on the worked examples (notebooks/bring_your_own.ipynb trains a
GradientBoostingRegressor on the diabetes data and a Pipeline with a OneHotEncoder on string columns), served by the
one handler on every route, answering exactly what the estimator answers; and the files it refuses, leaving nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression

from tests.helpers import ROOT, post_feedback

NOTEBOOK = ROOT / "notebooks" / "bring_your_own.ipynb"


def import_model(functions_dir: Path, file: Path, name: str, *options: str) -> subprocess.CompletedProcess:
    """`make import-model` as the Makefile runs it, into `functions_dir`."""
    return subprocess.run([sys.executable, "-m", "iris_tools.model_import", str(file), name, *options], cwd=ROOT,
                          env={**os.environ, "IRIS_FUNCTIONS_DIR": str(functions_dir)}, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The notebook's two files, trained into a temporary folder."""
    out = tmp_path_factory.mktemp("trained")
    result = subprocess.run([sys.executable, "notebooks/run_notebook.py", str(NOTEBOOK)], cwd=ROOT,
                            env={**os.environ, "IRIS_EXAMPLES_DIR": str(out)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return {"diabetes": out / "diabetes.joblib", "telco": out / "telco.joblib"}


@pytest.fixture(scope="module")
def functions_dir(examples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("functions")
    for name, file in list(examples.items()):
        imported = import_model(directory, file, name)
        assert imported.returncode == 0, imported.stderr
        examples[f"{name}-output"] = imported.stdout  # type: ignore[assignment]
    return directory


@pytest.fixture(scope="module")
def telco_rows() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"tenure": rng.integers(1, 72, 40).astype(float),
                         "plan": rng.choice(["basic", "pro", "team"], 40),
                         "contract": rng.choice(["monthly", "yearly"], 40),
                         "monthly": np.round(rng.uniform(10, 120, 40), 2)})


def test_the_import_says_what_it_found(examples: dict, functions_dir: Path) -> None:
    telco = examples["telco-output"]
    assert "estimator: Pipeline (sklearn.pipeline.Pipeline), a classifier" in telco
    assert [line.split()[:2] for line in telco.splitlines() if line.strip().split()[:1] in
            (["tenure"], ["plan"], ["contract"], ["monthly"])] == [
        ["tenure", "number"], ["plan", "string"], ["contract", "string"], ["monthly", "number"]]
    assert "plan      string  basic, pro, team" in telco and "classes: churn, stay" in telco
    diabetes = examples["diabetes-output"]
    assert "GradientBoostingRegressor (sklearn.ensemble._gb.GradientBoostingRegressor), a regressor" in diabetes
    manifest = json.loads((functions_dir / "telco" / "model.json").read_text())
    assert manifest["task"] == "classifier" and manifest["source"]["file"] == "telco.joblib"
    assert manifest["features"][1] == {"name": "plan", "alias": "plan", "type": "string",
                                       "categories": ["basic", "pro", "team"]}
    assert (functions_dir / "telco" / "main.py").read_text() == (ROOT / "functions" / "svc" / "main.py").read_text(
    ).replace("`svc`", "`telco`")


def test_a_pipeline_answers_every_route_exactly_as_the_estimator_does(examples: dict, functions_dir: Path,
                                                                      client_for: Callable, telco_rows) -> None:
    own = joblib.load(examples["telco"])
    expected = own.predict(telco_rows).tolist()
    client = client_for(functions_dir / "telco")
    records = telco_rows.to_dict("records")
    gets = [client.get("/", query_string={k: str(v) for k, v in row.items()}).get_json()["predicted_class"]
            for row in records]
    as_lists = client.post("/", json={"instances": telco_rows.values.tolist()}).get_json()["predictions"]
    as_objects = client.post("/", json={"instances": records}).get_json()["predictions"]
    assert gets == as_lists == as_objects == expected
    answer = client.get("/?tenure=12&plan=pro&contract=monthly&monthly=29.5").get_json()
    assert (answer["tenure"], answer["plan"], answer["model"]) == (12.0, "pro", "telco")
    assert client.get("/metadata").get_json()["model"]["task"] == "classifier"


def test_a_regressor_answers_prediction_to_1e_9_of_the_estimator(examples: dict, functions_dir: Path,
                                                                  client_for: Callable) -> None:
    own = joblib.load(examples["diabetes"])
    data = load_diabetes(as_frame=True).data.iloc[:50]
    expected = own.predict(data)
    client = client_for(functions_dir / "diabetes")
    batch = client.post("/", json={"instances": data.values.tolist()}).get_json()["predictions"]
    one = client.get("/", query_string={k: repr(v) for k, v in data.iloc[0].items()}).get_json()
    assert "predicted_class" not in one and isinstance(one["prediction"], float)
    np.testing.assert_allclose(batch, expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(one["prediction"], expected[0], rtol=1e-9, atol=0)


@pytest.mark.parametrize(("query", "field", "code"), [
    ("tenure=x&plan=pro&contract=monthly&monthly=1", "tenure", "not_a_number"),
    ("tenure=1&plan=gold&contract=monthly&monthly=1", "plan", "unknown_category"),
    ("tenure=1&plan=pro&contract=monthly", "monthly", "missing_field"),
    ("tenure=1&plan=pro&contract=monthly&monthly=1&extra=2", "extra", "unknown_field"),
])
def test_a_wrong_value_or_feature_is_a_400_naming_it(functions_dir: Path, client_for: Callable, query: str,
                                                     field: str, code: str) -> None:
    answer = client_for(functions_dir / "telco").get(f"/?{query}")
    assert answer.status_code == 400 and (answer.get_json()["field"], answer.get_json()["code"]) == (field, code)


def test_a_number_where_a_string_is_expected_in_a_batch_is_a_400_naming_where(functions_dir: Path,
                                                                              client_for: Callable) -> None:
    answer = client_for(functions_dir / "telco").post("/", json={"instances": [[1, 2, "monthly", 3]]})
    assert answer.status_code == 400
    assert (answer.get_json()["field"], answer.get_json()["code"]) == ("instances[0][1]", "not_a_string")


def test_a_skops_file_is_imported_with_its_types_vetted(examples: dict, tmp_path: Path) -> None:
    import skops.io

    skops.io.dump(joblib.load(examples["telco"]), tmp_path / "telco.skops")
    imported = import_model(tmp_path / "functions", tmp_path / "telco.skops", "telco_skops")
    assert imported.returncode == 0, imported.stderr
    assert json.loads((tmp_path / "functions" / "telco_skops" / "model.json").read_text())["source"]["format"] == "skops"


class Payload:
    """Runs a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def refused(tmp_path: Path, file: Path, name: str = "mine", *options: str) -> str:
    """The import's error line; it must have written nothing."""
    functions = tmp_path / "functions"
    functions.mkdir(exist_ok=True)
    before = sorted(functions.iterdir())
    result = import_model(functions, file, name, *options)
    assert result.returncode == 1, result.stdout
    assert sorted(functions.iterdir()) == before, "the refused import left something behind"
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_pickle_that_calls_os_system_is_refused_naming_it_before_it_runs(examples: dict, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    model = joblib.load(examples["telco"])
    model.hidden_ = Payload(marker)
    joblib.dump(model, tmp_path / "evil.joblib")
    error = refused(tmp_path, tmp_path / "evil.joblib")
    assert "names os.system, which is not trusted (it is outside scikit-learn, numpy and scipy)" in error
    assert not marker.exists(), "the payload ran"


def test_what_is_not_a_fitted_classifier_or_regressor_is_refused(tmp_path: Path) -> None:
    joblib.dump(LogisticRegression(), tmp_path / "unfitted.joblib")
    assert "a LogisticRegression that is not fitted" in refused(tmp_path, tmp_path / "unfitted.joblib")
    joblib.dump(KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.eye(4)), tmp_path / "kmeans.joblib")
    assert "neither a classifier nor a regressor" in refused(tmp_path, tmp_path / "kmeans.joblib")
    (tmp_path / "text.joblib").write_text("not a pickle")
    assert "not a pickle this can read" in refused(tmp_path, tmp_path / "text.joblib")


def test_a_taken_name_or_a_bad_one_is_refused(examples: dict, functions_dir: Path, tmp_path: Path) -> None:
    result = import_model(functions_dir, examples["telco"], "telco")
    assert result.returncode == 1 and "functions/telco/ already exists" in result.stderr
    assert "a model's name is its folder's" in refused(tmp_path, examples["telco"], "Bad-Name")
    (tmp_path / "functions" / "svc").mkdir(parents=True)
    (tmp_path / "functions" / "svc" / "model.json").write_text('{"name": "svc"}')
    assert "is not an imported model" in refused(tmp_path, examples["telco"], "svc", "--replace")


def v2_inputs(frame: pd.DataFrame, strings: set[str]) -> list[dict]:
    return [{"name": name, "datatype": "BYTES" if name in strings else "FP64", "shape": [len(frame)],
             "data": frame[name].tolist()} for name in frame.columns]


def test_v2_takes_one_tensor_per_feature_bytes_for_strings_and_answers_as_the_estimator(
        examples: dict, functions_dir: Path, client_for: Callable, telco_rows) -> None:
    own = joblib.load(examples["telco"])
    client = client_for(functions_dir / "telco")
    metadata = client.get("/v2/models/telco").get_json()
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        ("tenure", "FP64"), ("plan", "BYTES"), ("contract", "BYTES"), ("monthly", "FP64")]
    answer = client.post("/v2/models/telco/infer", json={"inputs": v2_inputs(telco_rows, {"plan", "contract"}),
                                                         "outputs": [{"name": "class_name"}]}).get_json()
    assert answer["outputs"][0]["data"] == own.predict(telco_rows).tolist()
    # BYTES in binary: a 4-byte little-endian length before each element.
    raw = b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in telco_rows.plan)
    inputs = v2_inputs(telco_rows, {"plan", "contract"})
    inputs[1] = {"name": "plan", "datatype": "BYTES", "shape": [len(telco_rows)],
                 "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": inputs, "outputs": [{"name": "class_name"}]}).encode()
    binary = client.post("/v2/models/telco/infer", data=header + raw,
                         headers={"Inference-Header-Content-Length": str(len(header))}).get_json()
    assert binary["outputs"][0]["data"] == own.predict(telco_rows).tolist()
    inputs = v2_inputs(telco_rows.head(1), {"plan", "contract"})
    inputs[1]["data"] = ["gold"]
    refused = client.post("/v2/models/telco/infer", json={"inputs": inputs}).get_json()
    assert (refused["field"], refused["code"]) == ("inputs[1].data[0]", "unknown_category")
    inputs = v2_inputs(telco_rows.head(1), {"contract"})
    inputs[1] = {"name": "plan", "datatype": "FP64", "shape": [1], "data": [1.0]}
    refused = client.post("/v2/models/telco/infer", json={"inputs": inputs}).get_json()
    assert (refused["field"], refused["code"]) == ("inputs[1].datatype", "unsupported_datatype")


def test_v2_of_a_regressor_answers_prediction(examples: dict, functions_dir: Path, client_for: Callable) -> None:
    data = load_diabetes(as_frame=True).data.iloc[:20]
    client = client_for(functions_dir / "diabetes")
    assert [o["name"] for o in client.get("/v2/models/diabetes").get_json()["outputs"]] == ["prediction"]
    answer = client.post("/v2/models/diabetes/infer", json={"inputs": v2_inputs(data, set())}).get_json()
    np.testing.assert_allclose(answer["outputs"][0]["data"], joblib.load(examples["diabetes"]).predict(data),
                               rtol=1e-9, atol=0)


def test_a_regressor_takes_a_number_as_its_label_and_refuses_a_string(functions_dir: Path, client_for: Callable,
                                                                      capsys) -> None:
    client = client_for(functions_dir / "diabetes")
    answered = client.get("/?age=0&sex=0&bmi=0&bp=0&s1=0&s2=0&s3=0&s4=0&s5=0&s6=0")
    answer_id = answered.headers["X-Answer-Id"]
    accepted = post_feedback(client, {"id": answer_id, "label": 151.5})
    assert accepted.status_code == 200, accepted.get_json()
    for bad in ("151.5", True, None):
        refused = post_feedback(client, {"id": answer_id, "label": bad})
        assert refused.status_code == 400 and refused.get_json()["field"] == "label", refused.get_json()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"kind":"feedback"' in line]
    assert [entry["labels"] for entry in lines] == [[{"id": answer_id, "label": 151.5}]]


def test_a_linear_classifier_of_numbers_keeps_the_fast_path_and_answers_as_scikit_learn(tmp_path: Path,
                                                                                        client_for: Callable) -> None:
    """An imported LogisticRegression on numbers gets its decision rule, as the iris versions do: answered without
    scikit-learn (the estimator is not even loaded), each answer scikit-learn's."""
    from shared.model import ServedModel

    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    model = LogisticRegression().fit(X, np.where(X.a + X.b > 0.2, "yes", "no"))
    joblib.dump(model, tmp_path / "linear.joblib")
    assert import_model(tmp_path / "functions", tmp_path / "linear.joblib", "linear").returncode == 0
    from shared.v2 import outputs_of

    served = ServedModel.load(tmp_path / "functions" / "linear", "linear")
    outputs, _ = outputs_of(served)  # what the V2 routes are built with at start-up
    assert served.rule is not None and served._estimator is None and "decision_scores" in outputs
    rows = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    answer = client_for(tmp_path / "functions" / "linear").post("/", json={"instances": rows.values.tolist()})
    assert answer.get_json()["predictions"] == model.predict(rows).tolist()


def test_serving_an_imported_pipeline_needs_no_pandas(functions_dir: Path) -> None:
    """The images carry the runtime only (requirements.txt: no pandas, no skops): with both made unimportable, as in
    an image, the handler loads and answers a Pipeline fitted on a DataFrame. (scikit-learn itself imports pandas
    when it is there, so its absence is what is tested.)"""
    script = ("import sys\n"
              "class NotInTheImage:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] in ('pandas', 'skops'):\n"
              "            raise ImportError(name + ' is not in the image')\n"
              "sys.meta_path.insert(0, NotInTheImage())\n"
              "import numpy as np\n"
              "from pathlib import Path\n"
              "from shared.model import ServedModel\n"
              f"model = ServedModel.load(Path({str(functions_dir / 'telco')!r}), 'telco')\n"
              "rows = np.empty((1, 4), dtype=object); rows[0] = [12.0, 'pro', 'monthly', 29.5]\n"
              "print(model.predict(rows)[0], sorted(m for m in ('pandas', 'skops') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer, loaded = result.stdout.split(" ", 1)
    assert answer in ("churn", "stay") and loaded.strip() == "[]"
    assert "pandas" not in (ROOT / "requirements.txt").read_text() and "skops" not in (ROOT / "requirements.txt").read_text()


def test_the_report_compares_a_users_versions_on_their_rows_as_the_estimators_do(
        examples: dict, functions_dir: Path, telco_rows: pd.DataFrame, tmp_path: Path) -> None:
    """`make report` with two versions of the diabetes regressor and the telco Pipeline running, and a CSV of each one's
    rows with labels: the paired difference, the errors and the accuracy equal those of the estimators in-process."""
    from sklearn.linear_model import Ridge

    from tests.helpers import free_port
    from tests.system.servers import function_server

    diabetes = load_diabetes(as_frame=True)
    second = tmp_path / "ridge.joblib"
    joblib.dump(Ridge(alpha=0.5).fit(diabetes.data, diabetes.target), second)
    assert import_model(functions_dir, second, "diabetes_ridge").returncode == 0
    rows = diabetes.data.iloc[:60]
    (tmp_path / "diabetes.csv").write_text(rows.assign(label=diabetes.target.iloc[:60]).to_csv(index=False))
    telco = joblib.load(examples["telco"])
    labels = np.where(np.arange(len(telco_rows)) % 3 == 0, "churn", "stay")
    (tmp_path / "telco.csv").write_text(telco_rows.assign(label=labels).to_csv(index=False))
    with function_server(functions_dir / "diabetes" / "main.py", free_port()) as one, \
            function_server(functions_dir / "diabetes_ridge" / "main.py", free_port()) as two, \
            function_server(functions_dir / "telco" / "main.py", free_port()) as three:
        def report(csv: Path) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "iris_tools.report", "--out", str(tmp_path / "out"),
                                   "--rollout", str(tmp_path / "none.json"), "--latency-requests", "5",
                                   f"--url=diabetes={one}", f"--url=diabetes_ridge={two}", f"--url=telco={three}",
                                   "--csv", str(csv)], cwd=ROOT, capture_output=True, text=True, timeout=120)

        regression = report(tmp_path / "diabetes.csv")
        classes = report(tmp_path / "telco.csv")
        wrong = tmp_path / "wrong.csv"
        wrong.write_text(rows.assign(age="old").to_csv(index=False))
        refused = report(wrong)
    assert regression.returncode == 0, regression.stderr
    assert "telco: to compare on rows of your own, give CSV= a file with columns tenure,plan,contract,monthly" \
        in regression.stdout
    figures = json.loads((tmp_path / "out" / "compare-diabetes.json").read_text())
    gradient = joblib.load(examples["diabetes"]).predict(rows)
    ridge = joblib.load(second).predict(rows)
    (pair,) = figures["pairs"]
    assert figures["task"] == "regressor" and figures["n"] == 60 and (pair["a"], pair["b"]) == ("diabetes", "diabetes_ridge")
    assert pair["mean_absolute_difference"] == pytest.approx(np.abs(ridge - gradient).mean(), rel=1e-6)
    assert pair["max_absolute_difference"] == pytest.approx(np.abs(ridge - gradient).max(), rel=1e-6)
    truth = diabetes.target.iloc[:60].to_numpy()
    assert figures["by_version"]["diabetes"]["mean_absolute_error"] == pytest.approx(np.abs(gradient - truth).mean(), rel=1e-6)
    assert figures["by_version"]["diabetes_ridge"]["mean_absolute_error"] == pytest.approx(np.abs(ridge - truth).mean(), rel=1e-6)
    assert "mean absolute difference" in (tmp_path / "out" / "compare-diabetes.md").read_text()

    assert classes.returncode == 0, classes.stderr
    scored = json.loads((tmp_path / "out" / "compare-telco.json").read_text())["by_version"]["telco"]
    said = telco.predict(telco_rows)
    assert scored["accuracy"] == round(float((said == labels).mean()), 4)
    assert scored["class_mix"] == {c: int((said == c).sum()) for c in sorted(set(said))}
    assert refused.returncode == 1 and "line 2: age 'old' is not a number" in refused.stderr, refused.stderr


def test_probabilities_on_request_are_named_by_class_and_logged_as_the_top_ones(
        examples: dict, functions_dir: Path, client_for: Callable, telco_rows, capsys) -> None:
    """A Pipeline with predict_proba: GET's output=probabilities, POST's outputs and V2's predict_proba answer its
    probabilities named by class in its order, to 1e-12, and the prediction log keeps each row's top probability;
    a model without them answers a 400 that says what it offers instead, on each route."""
    own = joblib.load(examples["telco"])
    expected = own.predict_proba(telco_rows[:3])
    client = client_for(functions_dir / "telco")
    capsys.readouterr()
    posted = client.post("/", json={"instances": telco_rows[:3].to_dict("records"), "outputs": ["probabilities"]})
    assert posted.status_code == 200, posted.get_data(as_text=True)
    named = posted.get_json()["probabilities"]
    assert [list(row) for row in named] == [["churn", "stay"]] * 3
    np.testing.assert_allclose([list(row.values()) for row in named], expected, rtol=0, atol=1e-12)
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"kind":"prediction"' in line]
    assert logged[-1]["confidence"] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-12)
    got = client.get("/", query_string={**{k: str(v) for k, v in telco_rows.iloc[0].items()},
                                        "output": "probabilities"}).get_json()
    assert list(got["probabilities"].values()) == pytest.approx(expected[0].tolist(), abs=1e-12)
    assert "confidence" not in client.get("/", query_string={k: str(v) for k, v in telco_rows.iloc[0].items()}
                                          ).get_json()
    metadata = client.get("/v2/models/telco").get_json()
    assert {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2],
            "parameters": {"classes": ["churn", "stay"]}} in metadata["outputs"]
    svc = client_for(ROOT / "functions" / "svc")
    for response in (svc.get("/?length=5.8&width=3.4&output=probabilities"),
                     svc.post("/", json={"instances": [[5.8, 3.4]], "outputs": ["probabilities"]}),
                     svc.post("/v2/models/svc/infer", json={"inputs": [{"name": "features", "datatype": "FP64",
                              "shape": [1, 2], "data": [5.8, 3.4]}], "outputs": [{"name": "predict_proba"}]})):
        assert response.status_code == 400 and response.get_json()["code"] == "no_probabilities"
        assert "'svc'" in response.get_json()["error"] and "decision_scores" in response.get_json()["error"]
    unknown = svc.post("/", json={"instances": [[5.8, 3.4]], "outputs": ["shap"]})
    assert unknown.status_code == 400 and unknown.get_json()["code"] == "unknown_output"
