"""The quality check at and around its bounds: accuracy (sequential non-inferiority), too few labels, the mix."""

from __future__ import annotations

import math

import pytest

from iris_tools.quality.outcomes import RevisionOutcome
from iris_tools.rollout.quality_gate import QualityThresholds, accuracy_evidence, judge_quality

ALPHA = 0.01 / 4
T = QualityThresholds(max_accuracy_drop=0.02, max_mix_shift=0.10, min_labels=50)
MIX = {"setosa": 30, "versicolor": 40, "virginica": 30}


def outcome(labelled: int, correct: int, mix: dict[str, int] | None = None) -> RevisionOutcome:
    return RevisionOutcome("r", predictions=sum((mix or MIX).values()), joinable=labelled, labelled=labelled,
                           correct=correct, mix=dict(mix or MIX))


def test_a_candidate_far_worse_is_rolled_back_and_one_as_good_passes_with_enough_labels() -> None:
    worse = judge_quality(outcome(400, 240), outcome(400, 330), T, ALPHA)  # 60% against 82.5%
    assert worse.decision == "rollback" and "the candidate is worse" in worse.reasons[0]
    same = judge_quality(outcome(400, 330), outcome(400, 330), T, ALPHA)
    assert same.decision == "promote" and "within the margin" in same.reasons[0]


def test_the_breach_is_called_exactly_where_the_evidence_reaches_what_a_step_may_spend() -> None:
    """Around the bound: the largest count of correct answers that still breaches, and one more."""
    needed = math.log(1 / ALPHA)
    stable = outcome(1000, 820)
    breaching = [c for c in range(600, 820) if accuracy_evidence(outcome(1000, c), stable, 0.02) >= needed]
    edge = max(breaching)
    assert judge_quality(outcome(1000, edge), stable, T, ALPHA).decision == "rollback"
    assert judge_quality(outcome(1000, edge + 1), stable, T, ALPHA).decision == "hold"  # undecided: more labels
    at_margin = judge_quality(outcome(1000, 800), stable, T, ALPHA)  # exactly 2 points below
    assert at_margin.decision == "promote" and at_margin.evidence < 0  # leans to "at the margin or better"


@pytest.mark.parametrize("candidate, stable", [(0, 0), (49, 400), (400, 49)])
def test_too_few_labels_hold_never_promote(candidate: int, stable: int) -> None:
    """Broken on purpose (MIN_LABELS not checked): 49 perfect labels promoted."""
    verdict = judge_quality(outcome(candidate, candidate), outcome(stable, int(0.82 * stable)), T, ALPHA)
    assert verdict.decision == "hold" and verdict.wants_labels


def test_a_mix_shift_beyond_its_limit_rolls_back_only_when_its_test_says_so() -> None:
    moved = {"setosa": 60, "versicolor": 20, "virginica": 20}  # total variation 0.3 from MIX
    big = judge_quality(outcome(400, 330, {k: 10 * v for k, v in moved.items()}),
                        outcome(400, 330, {k: 10 * v for k, v in MIX.items()}), T, ALPHA)
    assert big.decision == "rollback" and "prediction mix moved 0.300" in big.reasons[-1]
    few = judge_quality(outcome(400, 330, {"setosa": 6, "versicolor": 2, "virginica": 2}),
                        outcome(400, 330, {"setosa": 3, "versicolor": 4, "virginica": 3}), T, ALPHA)
    assert few.decision == "promote"  # 0.3 apart on 10 answers each: chance
    small = {"setosa": 330, "versicolor": 370, "virginica": 300}  # 0.03 apart on 1,000 each: inside the limit
    assert judge_quality(outcome(400, 330, small), outcome(400, 330, {k: 10 * v for k, v in MIX.items()}), T,
                         ALPHA).decision == "promote"


def _shared(labelled: int, answers: int, correct: int) -> RevisionOutcome:
    return RevisionOutcome("r", predictions=answers, joinable=answers, labelled=labelled, correct=correct,
                           mix=dict(MIX))


def test_labels_reaching_one_side_more_than_chance_allows_hold_and_never_promote() -> None:
    """The sample-ratio check: 200 of 400 candidate answers labelled against 380 of 400 stable ones holds a
    candidate that would otherwise pass; the same shares up to chance pass. Broken on purpose (the check's hold
    removed): the first was promoted."""
    skewed = judge_quality(_shared(200, 400, 166), _shared(380, 400, 315), T, ALPHA)
    assert skewed.decision == "hold" and skewed.shares is not None and skewed.shares.mismatched
    assert "gamed label pipeline" in " ".join(skewed.reasons)
    assert skewed.as_json()["label_share"]["candidate"] == 0.5
    alike = judge_quality(_shared(370, 400, 307), _shared(380, 400, 315), T, ALPHA)
    assert alike.decision == "promote" and not alike.shares.mismatched


def test_a_skewed_share_never_saves_a_candidate_the_answers_condemn() -> None:
    worse = judge_quality(_shared(200, 400, 100), _shared(380, 400, 315), T, ALPHA)
    assert worse.decision == "rollback"


def test_shares_from_different_windows_are_not_compared() -> None:
    """At 100% the stable's figures are an earlier step's: its labels had longer to come back."""
    later = judge_quality(_shared(200, 400, 166), _shared(380, 400, 315), T, ALPHA, same_window=False)
    assert later.decision == "promote" and later.shares is None
