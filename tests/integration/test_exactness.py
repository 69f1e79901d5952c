"""The serving path answers exactly what scikit-learn's predict answers: on every training
point, and on over a million grid, random and near-boundary points, in request-sized batches
and one row at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from shared.model import ServedModel
from tests.helpers import MODEL_DIRS, ROOT, iris_xy

LINEAR_DIRS = [d for d in MODEL_DIRS if (d / "model.rule.json").exists()]
REQUEST_ROWS = 10_000


def boundary_points(model: ServedModel, per_line: int, rng: np.random.Generator) -> np.ndarray:
    """Points on each decision line of the rule, nudged by a few ulps either way."""
    rule = model.rule
    W, b = rule.weights, rule.intercepts
    if rule.kind == "ovo":
        lines = list(zip(W, b))
    else:
        lines = [(W[c] - W[d], b[c] - b[d]) for c in range(len(W)) for d in range(c + 1, len(W))]
    points = []
    for w, c in lines:
        x0 = rng.uniform(3.0, 9.0, per_line)
        x1 = -(c + w[0] * x0) / w[1]
        x1 = x1 + rng.integers(-4, 5, per_line) * np.spacing(x1)
        points.append(np.column_stack([x0, x1]))
    return np.vstack(points)


def million_points(model: ServedModel) -> np.ndarray:
    rng = np.random.default_rng(20261125)
    grid = np.stack(np.meshgrid(np.linspace(3.0, 9.0, 800), np.linspace(1.5, 5.0, 500)), axis=-1).reshape(-1, 2)
    draws = np.column_stack([rng.uniform(3.0, 9.0, 450_000), rng.uniform(1.5, 5.0, 450_000)])
    points = np.vstack([grid, draws, boundary_points(model, 60_000, rng)])
    return points[rng.permutation(len(points))]


@pytest.fixture(params=LINEAR_DIRS, ids=[d.name for d in LINEAR_DIRS])
def served(request: pytest.FixtureRequest) -> tuple[ServedModel, object]:
    directory = request.param
    return ServedModel.load(directory, directory.name), joblib.load(directory / "model.joblib")


def test_every_training_point_is_answered_as_scikit_learn_does(served) -> None:
    model, estimator = served
    X, _ = iris_xy()
    assert model.predict_indices(X).tolist() == estimator.predict(X).tolist()
    assert [model.predict_one(tuple(row)) for row in X.tolist()] == [model.manifest.class_names[i] for i in estimator.predict(X)]


def test_over_a_million_points_in_request_sized_batches_match_scikit_learn(served) -> None:
    model, estimator = served
    points = million_points(model)
    assert len(points) >= 1_000_000
    uncertain = 0
    for start in range(0, len(points), REQUEST_ROWS):
        batch = points[start:start + REQUEST_ROWS]
        _, certain = model.rule.predict(batch)
        uncertain += int((~certain).sum())
        assert np.array_equal(model.predict_indices(batch), estimator.predict(batch)), f"batch at {start}"
    assert uncertain > 0  # the near-boundary points did reach scikit-learn itself


def test_near_boundary_and_random_rows_one_at_a_time_match_scikit_learn(served) -> None:
    model, estimator = served
    rng = np.random.default_rng(7)
    rows = np.vstack([boundary_points(model, 2_000, rng),
                      np.column_stack([rng.uniform(3.0, 9.0, 5_000), rng.uniform(1.5, 5.0, 5_000)])])
    expected = [model.manifest.class_names[i] for i in estimator.predict(rows)]
    assert [model.predict_one(tuple(row)) for row in rows.tolist()] == expected
    # Small batches take the plain-float path too.
    for start in range(0, len(rows), 5):
        small = rows[start:start + 5]
        assert np.array_equal(model.predict_indices(small), estimator.predict(small)), f"rows at {start}"


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
    before, after_far, after_near, far, near, x1 = json.loads(result.stdout.splitlines()[-1])  # after the prediction log lines
    assert (before, after_far, after_near) == (False, False, True)
    estimator = joblib.load(model_dir / "model.joblib")
    names = json.loads((model_dir / "model.json").read_text())["class_names"]
    assert far == names[estimator.predict([[5.8, 3.4]])[0]]
    assert near == names[estimator.predict([[5.5, x1]])[0]]
