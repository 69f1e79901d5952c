"""The serving path's answers near a tie and far from one (the promise is stated in
tests/integration/exactness_check.py): beyond the rounding bound, the exact answer; within it,
scikit-learn's own answer for the same call. Checked on every training point, on over a million
grid, random and near-boundary points, and one row at a time under each OpenBLAS setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from shared.model import ServedModel
from tests.exact import ExactLinear, first_differences
from tests.helpers import MODEL_DIRS, ROOT, iris_xy
from tests.integration.exactness_check import REQUEST_ROWS, boundary_points

LINEAR_DIRS = [d for d in MODEL_DIRS if (d / "model.rule.json").exists()]
# Some machines set these (older OpenBLAS builds misbehave on their processors); CI inherits them.
# With them, scikit-learn's LinearSVC answers some near-tie points differently in a batch than alone.
OPENBLAS_SETTINGS = {"default": {}, "haswell": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}}


@pytest.fixture(params=LINEAR_DIRS, ids=[d.name for d in LINEAR_DIRS])
def served(request: pytest.FixtureRequest) -> tuple[ServedModel, object]:
    directory = request.param
    return ServedModel.load(directory, directory.name), joblib.load(directory / "model.joblib")


def million_points(model: ServedModel) -> np.ndarray:
    rng = np.random.default_rng(20261125)
    grid = np.stack(np.meshgrid(np.linspace(3.0, 9.0, 800), np.linspace(1.5, 5.0, 500)), axis=-1).reshape(-1, 2)
    draws = np.column_stack([rng.uniform(3.0, 9.0, 450_000), rng.uniform(1.5, 5.0, 450_000)])
    points = np.vstack([grid, draws, boundary_points(model, 60_000, rng)])
    return points[rng.permutation(len(points))]


def test_every_training_point_is_answered_exactly(served) -> None:
    model, estimator = served
    X, _ = iris_xy()
    exact = ExactLinear(estimator).predict(X)
    assert not first_differences(model.predict_indices(X), exact, X)
    one_at_a_time = np.array([model.predict_one(tuple(row)) for row in X.tolist()], dtype=object)
    assert not first_differences(one_at_a_time, np.array(model.manifest.class_names, dtype=object)[exact], X)


def test_over_a_million_points_in_request_sized_batches_match_scikit_learn_on_the_same_batch(served) -> None:
    """Every batch is answered as scikit-learn answers that batch: by the rule where every row clears the
    bound (where any ordinary evaluation agrees), by scikit-learn itself where one does not."""
    model, estimator = served
    points = million_points(model)
    assert len(points) >= 1_000_000
    uncertain = 0
    for start in range(0, len(points), REQUEST_ROWS):
        batch = points[start:start + REQUEST_ROWS]
        _, certain = model.rule.predict(batch)
        uncertain += int((~certain).sum())
        difference = first_differences(model.predict_indices(batch), estimator.predict(batch), batch)
        assert not difference, f"batch at {start}: {difference}"
    assert uncertain > 0  # the near-boundary points did reach scikit-learn itself


@pytest.mark.parametrize("model_dir", LINEAR_DIRS, ids=[d.name for d in LINEAR_DIRS])
def test_near_ties_get_the_exact_answer_beyond_the_bound_and_scikit_learns_own_within_it(model_dir: Path) -> None:
    """11,000 near-boundary and random rows, one at a time and in batches of 5 and 10,000, in a process
    of their own under each OpenBLAS setting (the two run side by side). Broken on purpose, it fails:
    with the rule's SAFETY cut a thousandfold, 174 lin_svc rows it then calls differ from exact; with
    predict_one asking scikit-learn for its row inside a two-row batch, 100 lin_svc near-tie rows differ
    from scikit-learn's one-row answer."""
    runs = {}
    for setting, variables in OPENBLAS_SETTINGS.items():
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
        runs[setting] = subprocess.Popen([sys.executable, "-m", "tests.integration.exactness_check", str(model_dir)],
                                         cwd=ROOT, env={**environment, **variables}, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    for setting, run in runs.items():
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, f"{setting}: {stderr[-3000:]}"
        report = json.loads(stdout.splitlines()[-1])
        assert report["openblas_coretype"] == OPENBLAS_SETTINGS[setting].get("OPENBLAS_CORETYPE"), setting
        assert report["failures"] == {}, f"{setting}: {json.dumps(report, indent=1)}"
        # Both sides of the promise were exercised.
        assert report["beyond_bound"] >= 5_000 and report["within_bound"] >= 1_000, report
        assert report["batch_paths"]["exact"] > 0 and report["batch_paths"]["scikit-learn"] > 0, report


@pytest.mark.parametrize("model_dir", LINEAR_DIRS, ids=[d.name for d in LINEAR_DIRS])
def test_a_linear_version_starts_without_scikit_learn_and_loads_it_only_for_a_near_tie(model_dir: Path) -> None:
    script = f"""
import json, sys
import numpy as np
from functions_framework import create_app
client = create_app("predict", {str(model_dir / 'main.py')!r}).test_client()
before = "sklearn" in sys.modules
far = client.get("/?length=5.8&width=3.4").get_json()["predicted_class"]
after_far = "sklearn" in sys.modules
rule = json.load(open({str(model_dir / 'model.rule.json')!r}))
w, b = np.array(rule["weights"][0]), rule["intercepts"][0]
if rule["kind"] == "ovr":
    w, b = w - np.array(rule["weights"][1]), b - rule["intercepts"][1]
x0 = 5.5
x1 = float(-(b + w[0] * x0) / w[1])
near = client.get(f"/?length={{x0!r}}&width={{x1!r}}").get_json()["predicted_class"]
print(json.dumps([before, after_far, "sklearn" in sys.modules, far, near, x1]))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # The script's one JSON list, among the prediction log lines (written straight to the descriptor by their
    # writer thread while the script's own buffered stdout is flushed at exit: one may follow it on its line).
    before, after_far, after_near, far, near, x1 = next(
        json.JSONDecoder().raw_decode(line)[0] for line in reversed(result.stdout.splitlines()) if line.startswith("["))
    assert (before, after_far, after_near) == (False, False, True)
    estimator = joblib.load(model_dir / "model.joblib")
    names = json.loads((model_dir / "model.json").read_text())["class_names"]
    assert far == names[estimator.predict([[5.8, 3.4]])[0]]
    assert near == names[estimator.predict([[5.5, x1]])[0]]
