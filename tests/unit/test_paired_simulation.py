"""What the paired judgement at 0% promises, by simulation: rollouts whose candidate is asked the stable revision's
300 labelled inputs. A classifier 10 points worse (the stable right on 90%, the candidate on 80%: it gets wrong 11%
the stable got right and right 1% the stable got wrong) is rolled back before any traffic in at least 95% of them; one
at the margin (2 points worse) in at most 1%. A regressor 25% worse on the same inputs is rolled back in at least
95%; one at the margin (5% worse) in at most 1%. The check's budget is half the gate's (1 - CONFIDENCE = 0.01)."""

from __future__ import annotations

import numpy as np
import pytest

from iris_tools.rollout.paired import judge_classes, judge_errors, spent

ALPHA, LABELS, ROLLOUTS = 0.005, 300, 2000


def classifier_rollbacks(only_stable: float, only_candidate: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    rolled = 0
    for _ in range(ROLLOUTS):
        stable_right = rng.random(LABELS) < 0.9
        draw = rng.random(LABELS)
        candidate_right = np.where(stable_right, draw >= only_stable / 0.9, draw < only_candidate / 0.1)
        rolled += judge_classes(list(zip(stable_right, candidate_right)), 0.02, ALPHA).decision == "rollback"
    return rolled / ROLLOUTS


# How much more of the unexplained part the candidate leaves: its MAE 5% (the margin) or 25% above the stable one's,
# measured over 4 million inputs of this model.
SCALE_FOR = {0.05: 1.0576, 0.25: 1.2853}


def regressor_rollbacks(worse_by: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    rolled = 0
    for _ in range(ROLLOUTS):
        noise = rng.normal(0, 10, LABELS)  # what neither model explains: the same for both on the same input
        stable = np.abs(noise + rng.normal(0, 4, LABELS))
        candidate = np.abs(noise * SCALE_FOR[worse_by] + rng.normal(0, 4, LABELS))
        rolled += judge_errors(list(zip(stable, candidate)), 0.05, ALPHA).decision == "rollback"
    return rolled / ROLLOUTS


def test_the_spending_function_spends_the_budget_by_the_last_look_and_little_before() -> None:
    assert spent(ALPHA, 1.0) == pytest.approx(ALPHA) and spent(ALPHA, 0.0) == 0.0
    assert spent(ALPHA, 1 / 3) < 1e-5 < spent(ALPHA, 2 / 3) < ALPHA / 2


def test_a_classifier_10_points_worse_is_rolled_back_before_any_traffic_and_one_at_the_margin_is_not() -> None:
    worse = classifier_rollbacks(0.11, 0.01, seed=1)
    at_margin = classifier_rollbacks(0.03, 0.01, seed=2)
    same = classifier_rollbacks(0.02, 0.02, seed=3)
    assert worse >= 0.95, worse
    assert at_margin <= 0.01 and same <= 0.01, (at_margin, same)


def test_a_regressor_25_percent_worse_is_rolled_back_before_any_traffic_and_one_at_the_margin_is_not() -> None:
    worse = regressor_rollbacks(0.25, seed=4)
    at_margin = regressor_rollbacks(0.05, seed=5)
    assert worse >= 0.95, worse
    assert at_margin <= 0.01, at_margin
