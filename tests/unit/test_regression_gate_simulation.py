"""What the regressor's error check promises, simulated as the classifier's is (tests/unit/
test_quality_gate_simulation.py): default rollouts (4 steps, CONFIDENCE 0.99, MAX_ERROR_INCREASE 5%) with 1,000
labels per revision per step, looked at every 50. Errors are normal (so the absolute errors are half-normal, and
the MAE scales with their spread). A candidate whose MAE is exactly at the margin (5% above the stable's) is rolled
back in at most 1% of rollouts; one 25% worse in at least 99%. Seeded: the same figures every run (measured: 0.55%
of 2,000 at the margin; 100% of 500 at 25% worse, 94.2% at the first step). Broken on purpose: with the evidence
needed cut to log(1/(1 - CONFIDENCE)) (no share per step), 2.3% at the margin; with the stable MAE's own variance
left out of the difference's, 7.35%."""

from __future__ import annotations

import math

import numpy as np

from iris_tools.quality.outcomes import RevisionOutcome
from iris_tools.rollout.quality_gate import error_evidence

STEPS, CONFIDENCE, MARGIN, LABELS, LOOK_EVERY = 4, 0.99, 0.05, 1000, 50


def outcome(errors: np.ndarray) -> RevisionOutcome:
    absolute = np.abs(errors)
    return RevisionOutcome("r", labelled=len(errors), error_sum=float(absolute.sum()),
                           error_squares=float((absolute ** 2).sum()), sketch=[0.0] * 101, values_count=1)


def rolled_back(worse_by: float, rollouts: int, seed: int) -> tuple[float, float]:
    """(share of rollouts rolled back on their errors, share rolled back at their first step)."""
    rng = np.random.default_rng(seed)
    needed = math.log(STEPS / (1 - CONFIDENCE))
    rolled = first = 0
    for _ in range(rollouts):
        for step in range(STEPS):
            stable = rng.normal(0.0, 10.0, LABELS)
            candidate = rng.normal(0.0, 10.0 * (1 + worse_by), LABELS)
            if any(error_evidence(outcome(candidate[:n]), outcome(stable[:n]), MARGIN) >= needed
                   for n in range(LOOK_EVERY, LABELS + 1, LOOK_EVERY)):
                rolled += 1
                first += step == 0
                break
    return rolled / rollouts, first / rollouts


def test_a_candidate_at_the_margin_is_rolled_back_in_at_most_1_percent_of_rollouts() -> None:
    share, _ = rolled_back(MARGIN, 2000, seed=21)
    assert share <= 0.01, share


def test_a_candidate_25_percent_worse_is_rolled_back_in_at_least_99_percent() -> None:
    share, at_first = rolled_back(0.25, 500, seed=22)
    assert share >= 0.99 and at_first >= 0.7, (share, at_first)
