"""The rounding bound of `shared.linear`, tested at its edge: points placed at 0.001x to 2x the bound,
each decided point checked against exact rational arithmetic (tests/exact.py) and scikit-learn."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.svm import SVC

import shared.linear
from shared.linear import LinearRule, export
from tests.exact import ExactLinear
from tests.helpers import MODEL_DIRS

LINEAR_DIRS = [d for d in MODEL_DIRS if (d / "model.rule.json").exists()]
RATIOS = np.geomspace(1e-3, 2.0, 60)  # where each point lands, as a multiple of its decision's bound


def decision_lines(rule: LinearRule) -> list[tuple[int, int, np.ndarray, float]]:
    """(index a, index b, normal, offset) of each line where one decision is tied."""
    W, b = rule.weights, rule.intercepts
    if rule.kind == "ovo":
        return [(p, p, W[p], b[p]) for p in range(len(W))]
    return [(c, d, W[c] - W[d], b[c] - b[d]) for c in range(len(W)) for d in range(c + 1, len(W))]


def points_at_the_edge(rule: LinearRule, estimator) -> list[tuple[tuple[float, float], float]]:
    """(point, |exact decision| / bound) for points on either side of every decision line: at RATIOS of
    the bound, and a few ulps off the line (exact decisions far smaller than any rounding error)."""
    placed = []
    exact_model = ExactLinear(estimator)
    rng = np.random.default_rng(11)
    for a, b, normal, offset in decision_lines(rule):
        candidates = []
        for x0 in rng.uniform(4.5, 7.5, 8):
            x1 = -(offset + normal[0] * x0) / normal[1]
            base = np.array([x0, x1])
            bounds = np.abs(base) @ rule._scaled_magnitudes.T + rule._scaled_intercepts
            slack = bounds[a] if rule.kind == "ovo" else bounds[a] + bounds[b]
            for ratio in RATIOS:
                for side in (-1.0, 1.0):
                    point = base + side * ratio * slack * normal / (normal @ normal)
                    candidates.append(((float(point[0]), float(point[1])), slack))
        for x0 in rng.uniform(4.5, 7.5, 80):
            x1 = -(offset + normal[0] * x0) / normal[1]
            bounds = np.abs(np.array([x0, x1])) @ rule._scaled_magnitudes.T + rule._scaled_intercepts
            slack = bounds[a] if rule.kind == "ovo" else bounds[a] + bounds[b]
            for steps in range(-4, 5):
                candidates.append(((float(x0), float(x1 + steps * np.spacing(x1))), slack))
        for x, slack in candidates:
            decisions = exact_model.fractions(x)
            if rule.kind == "ovo":
                exact = decisions[a]
            else:
                others = [value for c, value in enumerate(decisions) if c not in (a, b)]
                if others and max(others) >= min(decisions[a], decisions[b]):
                    continue  # a third class leads here: this line decides nothing
                exact = decisions[a] - decisions[b]
            placed.append((x, abs(float(exact)) / slack))
    return placed


@pytest.fixture(params=LINEAR_DIRS, ids=[d.name for d in LINEAR_DIRS])
def trained(request: pytest.FixtureRequest):
    estimator = joblib.load(request.param / "model.joblib")
    return estimator, export(estimator)


def verdicts(rule: LinearRule, estimator, placed) -> tuple[int, int, list[str]]:
    """(decided, undecided, disagreements) of the rule, one row at a time and as a batch."""
    exact_model = ExactLinear(estimator)
    X = np.array([x for x, _ in placed])
    batch, certain = rule.predict(X)
    sklearn = estimator.predict(X)
    decided = undecided = 0
    wrong = []
    for (x, ratio), batch_class, sure, theirs in zip(placed, batch, certain, sklearn):
        # The two paths round differently, so right at the bound one may call a row the other leaves.
        calls = {"one row": rule.predict_one(x), "batch": int(batch_class) if sure else None}
        called = {path: answer for path, answer in calls.items() if answer is not None}
        if not called:
            undecided += 1
            continue
        decided += 1
        exact = exact_model.predict_one(x)
        for path, answer in called.items():
            if not answer == exact == theirs:
                wrong.append(f"{x} at {ratio:.3g}x the bound: rule ({path}) {answer}, exact {exact}, "
                             f"scikit-learn {theirs}")
    return decided, undecided, wrong


def test_every_point_the_bound_calls_decided_is_decided_as_exact_arithmetic_and_scikit_learn_say(trained) -> None:
    estimator, exported = trained
    rule = LinearRule(exported, 2)
    placed = points_at_the_edge(rule, estimator)
    ratios = np.array([ratio for _, ratio in placed])
    assert ((ratios >= 0.5) & (ratios <= 2.0)).sum() >= 100, "too few points between 0.5x and 2x the bound"
    decided, undecided, wrong = verdicts(rule, estimator, placed)
    assert wrong == []
    # The edge is where the test says it is: points well inside the bound are left to scikit-learn,
    # points well outside it are called.
    near = [rule.predict_one(x) for x, ratio in placed if ratio < 0.8]
    far = [rule.predict_one(x) for x, ratio in placed if ratio > 1.2]
    assert all(answer is None for answer in near)
    assert all(answer is not None for answer in far)


# How far each bound can be cut before an edge point is decided wrongly. The ovr bound (lin_svc:
# 2 features, 3 terms) sits within about 10x of the rounding actually seen, so a hundredfold cut
# is caught. The ovo bound (svc) is Higham's worst case over libsvm's sum of ~80 support vectors,
# about 300x the rounding actually seen: a hundredfold cut still decides these points correctly,
# a thousandfold cut does not.
CUTS = {"lin_svc": (0.0, 0.01), "svc": (0.0, 0.001)}


@pytest.mark.parametrize("model, cut", [(m, c) for m, cuts in CUTS.items() for c in cuts])
def test_a_bound_removed_or_cut_is_caught(model: str, cut: float, monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = joblib.load(MODEL_DIRS[[d.name for d in MODEL_DIRS].index(model)] / "model.joblib")
    exported = export(estimator)
    placed = points_at_the_edge(LinearRule(exported, 2), estimator)
    monkeypatch.setattr(shared.linear, "SAFETY", shared.linear.SAFETY * cut)
    weakened = LinearRule(exported, 2)
    _, _, wrong = verdicts(weakened, estimator, placed)
    assert wrong, "a weakened bound decided every edge point correctly: the edge points do not test the bound"


def test_the_private_scikit_learn_attributes_the_export_reads_are_there_and_mean_what_it_assumes() -> None:
    iris = load_iris()
    X, y = iris.data[:, :2], iris.target
    svc = SVC(kernel="linear", decision_function_shape="ovo").fit(X, y)
    for name in ("_dual_coef_", "_n_support", "_intercept_", "support_vectors_"):
        assert hasattr(svc, name), f"scikit-learn's SVC no longer has {name}: shared/linear.py's export must change"
    assert svc._dual_coef_.shape == (len(svc.classes_) - 1, len(svc.support_vectors_))
    assert int(np.sum(svc._n_support)) == len(svc.support_vectors_)
    assert svc._intercept_.shape == (len(svc.classes_) * (len(svc.classes_) - 1) // 2,)
    rule = LinearRule(export(svc), 2)
    points = np.random.default_rng(3).uniform([4, 2], [8, 4.5], size=(500, 2))
    scores = points @ rule.weights.T + rule.intercepts
    # libsvm's decision values, in its pair order and sign: what the export reproduces.
    assert np.allclose(scores, svc.decision_function(points), rtol=0, atol=1e-9)
