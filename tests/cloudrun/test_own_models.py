"""Imported models through the local Cloud Run, as the iris versions go: a Pipeline with string columns answering
every route at its service URL, and `make shadow` between two regressors reporting their paired difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.cloudrun.harness import WITH_FEEDBACK_KEY, CloudRunUnderTest, traffic_of
from tests.cloudrun.test_console import browser, check_screenshot, page_errors, running_console, text_of, wait_for  # noqa: F401
from tests.cloudrun.test_shadow import make
from tests.helpers import FEEDBACK_KEY, ROOT


def customers(count: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"tenure": rng.integers(1, 72, count).astype(float),
                         "plan": rng.choice(["basic", "pro", "team"], count),
                         "monthly": np.round(rng.uniform(10, 120, count), 2)})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three fitted models, imported with `make import-model`'s command into a functions folder of their own."""
    files = tmp_path_factory.mktemp("files")
    functions = tmp_path_factory.mktemp("functions")
    diabetes = load_diabetes(as_frame=True)
    table = customers(300, 3)
    X = np.random.default_rng(0).normal(size=(600, 4))
    fitted = {
        "boosted": HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=0).fit(
            X, (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)),
        "diabetes": GradientBoostingRegressor(n_estimators=50, random_state=0).fit(diabetes.data, diabetes.target),
        "diabetes_ridge": Ridge(alpha=0.5).fit(diabetes.data, diabetes.target),
        "diabetes_mean": DummyRegressor(strategy="mean").fit(diabetes.data, diabetes.target),
        "churn": Pipeline([("prepare", ColumnTransformer([("plan", OneHotEncoder(), ["plan"]),
                                                          ("numbers", StandardScaler(), ["tenure", "monthly"])])),
                           ("classify", LogisticRegression())]).fit(table, np.where(table.tenure < 20, "churn", "stay")),
    }
    for name, model in fitted.items():
        joblib.dump(model, files / f"{name}.joblib")
        result = subprocess.run([sys.executable, "-m", "iris_tools.model_import", str(files / f"{name}.joblib"), name],
                                cwd=ROOT, env={**os.environ, "IRIS_FUNCTIONS_DIR": str(functions)},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    return {"functions": functions, **fitted}


@pytest.fixture(scope="module")
def emulator(models: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudRunUnderTest]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IRIS_FUNCTIONS_DIR", str(models["functions"]))  # the emulator, gcloud and make see it
        cloud_run = CloudRunUnderTest(tmp_path_factory.mktemp("own") / "run")
        cloud_run.start()
        try:
            yield cloud_run
        finally:
            assert cloud_run.stop().returncode == 0


def test_a_pipeline_with_string_columns_answers_every_route_at_its_service_url(emulator, models) -> None:
    emulator.ok("run", "deploy", "churn", "--image", "iris:churn")
    url = emulator.read("churn")["status"]["url"]
    rows = customers(25, 9)
    expected = models["churn"].predict(rows).tolist()
    with requests.Session() as session:
        gets = [session.get(url + "/", params=row, timeout=10).json()["predicted_class"]
                for row in rows.to_dict("records")]
        batch = session.post(url + "/", json={"instances": rows.values.tolist()}, timeout=10).json()["predictions"]
        v2 = session.post(url + "/v2/models/churn/infer", timeout=10, json={
            "inputs": [{"name": name, "datatype": "BYTES" if name == "plan" else "FP64", "shape": [len(rows)],
                        "data": rows[name].tolist()} for name in rows.columns],
            "outputs": [{"name": "class_name"}]}).json()["outputs"][0]["data"]
        refused = session.get(url + "/?tenure=1&plan=gold&monthly=3", timeout=10)
    assert gets == batch == v2 == expected
    assert refused.status_code == 400 and refused.json()["field"] == "plan"


def test_a_heavy_model_batches_concurrent_requests_under_the_local_cloud_run(emulator, models) -> None:
    """Deployed with --concurrency 16 (and THREADS=16, so the instance's server takes as many requests at once, and
    PREDICTOR_PROCESS=1, as docs/cloud-run.md says), concurrent single-row requests to a boosted model are predicted
    together, in the estimator's own process: the revision's log says so (batch_rows), and each answer is exactly
    its row's own. Broken on purpose (BATCH_SIZE=1 set on the revision): no line had batch_rows, and the test
    failed."""
    from concurrent.futures import ThreadPoolExecutor

    emulator.ok("run", "deploy", "boosted", "--image", "iris:boosted", "--concurrency", "16", "--max-instances", "1",
                "--set-env-vars", "THREADS=16,PREDICTOR_PROCESS=1")
    url = emulator.read("boosted")["status"]["url"]
    rows = np.random.default_rng(5).normal(size=(400, 4)).round(3)
    expected = models["boosted"].predict(rows).tolist()

    def ask(row: np.ndarray) -> object:
        return requests.get(url + "/", params={f"x{i}": repr(float(v)) for i, v in enumerate(row)},
                            timeout=30).json()["predicted_class"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, rows))
    assert answers == expected
    revision = next(r for r, p, _ in traffic_of(emulator.read("boosted")) if p == 100)
    log = emulator.run_dir / "cloudrun" / "logs" / f"{revision}.log"
    batched = [json.loads(line)["batch_rows"] for line in log.read_text().splitlines() if '"batch_rows"' in line]
    assert batched and max(batched) > 1, "no request shared an estimator call"
    found = subprocess.run(["pgrep", "-f", "shared.predictor_process .*/boosted boosted"], capture_output=True, text=True)
    assert found.stdout.split(), "the boosted model's estimator did not run in a process of its own"


def test_the_shadow_of_a_regressor_reports_the_paired_difference(emulator, models) -> None:
    emulator.ok("run", "deploy", "diabetes", "--image", "iris:diabetes")
    url = emulator.read("diabetes")["status"]["url"]
    data = load_diabetes(as_frame=True).data.iloc[:120]
    with requests.Session() as session:
        for row in data.to_dict("records"):
            assert session.post(url + "/", json={"instances": [row]}, timeout=10).status_code == 200
    stable = next(r for r, p, _ in traffic_of(emulator.read("diabetes")) if p == 100)
    result = make(emulator, "shadow", "MODEL=diabetes_ridge", SERVICE="diabetes")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((emulator.run_dir / "report" / "shadow.json").read_text())
    differences = models["diabetes_ridge"].predict(data) - models["diabetes"].predict(data)
    assert (report["task"], report["n"], report["failed_requests"]) == ("regressor", 120, 0)
    assert report["mean_absolute_difference"] == pytest.approx(np.abs(differences).mean(), rel=1e-5)
    assert report["mean_difference"] == pytest.approx(differences.mean(), rel=1e-5, abs=1e-6)
    low, high = report["mean_absolute_difference_ci95"]
    assert low < report["mean_absolute_difference"] < high
    assert "mean absolute difference" in result.stdout
    assert {r: p for r, p, _ in traffic_of(emulator.read("diabetes")) if p} == {stable: 100}  # nobody moved
    gated = make(emulator, "rollout", f"REVISION={report['candidate']}", SERVICE="diabetes", MIN_AGREEMENT="0.9")
    assert gated.returncode != 0 and "MIN_AGREEMENT judges a classifier's answers" in gated.stdout
    assert {r: p for r, p, _ in traffic_of(emulator.read("diabetes")) if p} == {stable: 100}


def test_the_console_shows_a_regressor_s_shadow_as_its_paired_difference(emulator, models, browser,
                                                                         tmp_path: Path) -> None:
    """The console's shadow panel for the regressor shadowed above: its figures, as shadow.json has them."""
    report = json.loads((emulator.run_dir / "report" / "shadow.json").read_text())
    assert report["service"] == "diabetes" and report["task"] == "regressor"  # the test above ran first (one file)
    with running_console(emulator, tmp_path / "console.log", SERVICE="diabetes") as url:
        browser.get(url + "?service=diabetes")
        wait_for(browser, 20, lambda d: "Mean absolute difference" in text_of(d, "#shadow"), text_of(browser, "#shadow"))
        shown = text_of(browser, "#shadow")
        check_screenshot(browser, tmp_path / "console-regressor-shadow.png")
    low, high = report["mean_absolute_difference_ci95"]
    four = lambda value: f"{float(f'{value:.4g}'):g}"  # noqa: E731  (4 significant digits, as the page rounds)
    assert f"Mean absolute difference {four(report['mean_absolute_difference'])}" in shown, shown
    assert f"{four(low)} to {four(high)}" in shown and f"over {report['n']} inputs" in shown, shown
    assert "Agreement" not in shown and page_errors(browser) == []


def test_a_worse_regressor_is_rolled_back_on_its_answers_at_its_first_step(emulator, models) -> None:
    """The gate with LABELS on a regressor: under a labelled load of the diabetes rows (their true targets posted to
    /feedback 0.5 s after each answer), a candidate that always answers the mean (its MAE about twice the stable
    one's, its predicted values one value) is rolled back at its first step. LABEL_WAIT_S is long so that a busy
    machine's slower labels never pause the step for a person. Broken on purpose (the gate's regression branch
    taking the classifier's path): the candidate's numbers were judged as class names, never labelled, and the step
    held for labels until the test gave up."""
    from iris_tools.quality.rehearsal import LabelledLoad
    from tests.cloudrun.harness import make as make_rollout

    emulator.ok("run", "deploy", "sugar", "--image", "iris:diabetes", *WITH_FEEDBACK_KEY)
    url = emulator.read("sugar")["status"]["url"]
    stable = next(r for r, p, _ in traffic_of(emulator.read("sugar")) if p == 100)
    diabetes = load_diabetes(as_frame=True)
    rows = [({name: repr(value) for name, value in row.items()}, float(target))
            for row, target in zip(diabetes.data.to_dict("records"), diabetes.target)]
    load = LabelledLoad(url, rate=60, label_delay_s=0.5, jitter=0.0, seed=4, rows=rows, feedback_key=FEEDBACK_KEY)
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(300,), kwargs={"stop": stop.is_set}, daemon=True)
    sender.start()
    try:
        result = make_rollout(emulator, "rollout", "MODEL=diabetes_mean", SERVICE="sugar", STEPS="50 100",
                              LABELS="feedback", MIN_LABELS="20", LABEL_WAIT_S="120", PAIRED="0")
    finally:
        stop.set()
        sender.join(timeout=60)
    assert result.returncode != 0 and "ROLLED BACK" in result.stdout, result.stdout + result.stderr
    record = json.loads((emulator.run_dir / "rollout" / "latest.json").read_text())
    step = record["steps"][0]
    assert record["decision"] == "rolled back" and len(record["steps"]) == 1
    assert step["quality"]["decision"] == "rollback" and step["quality"]["candidate"]["mae"] > 0
    assert any("mean absolute error" in r and "the candidate is worse" in r or "Kolmogorov-Smirnov" in r
               for r in step["reasons"]), step["reasons"]
    assert {r: p for r, p, _ in traffic_of(emulator.read("sugar")) if p} == {stable: 100}
    assert load.failures == [] and all(isinstance(a.predicted, float) for a in load.answered)


def test_make_shadow_with_labels_judges_a_worse_regressor_on_the_same_labelled_inputs(emulator, models) -> None:
    """`make shadow LABELS=feedback` on the service the test above loaded with labelled diabetes rows: the paired
    check replays the stable revision's labelled answers to a candidate that always answers the mean, and finds its
    absolute errors larger on the same inputs. Nobody's traffic moves."""
    from tests.cloudrun.harness import make as make_rollout

    stable = next(r for r, p, _ in traffic_of(emulator.read("sugar")) if p == 100)
    result = make_rollout(emulator, "shadow", "MODEL=diabetes_ridge", SERVICE="sugar", LABELS="feedback",
                          MIN_LABELS="50")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((emulator.run_dir / "report" / "shadow.json").read_text())
    paired = report["paired"]
    assert paired["task"] == "regressor" and paired["n"] >= 50, paired
    # Ridge and the boosted trees are close on these rows; the figures are the two models' own errors.
    assert paired["candidate_mae"] > 0 and paired["stable_mae"] > 0 and "paired check:" in result.stdout
    mean = make_rollout(emulator, "shadow", "MODEL=diabetes_mean", SERVICE="sugar", LABELS="feedback",
                        MIN_LABELS="50")
    assert mean.returncode == 0, mean.stdout + mean.stderr
    worse = json.loads((emulator.run_dir / "report" / "shadow.json").read_text())["paired"]
    assert worse["decision"] == "rollback" and worse["candidate_mae"] > 1.3 * worse["stable_mae"], worse
    assert {r: p for r, p, _ in traffic_of(emulator.read("sugar")) if p} == {stable: 100}
