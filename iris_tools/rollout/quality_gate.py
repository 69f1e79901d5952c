"""The gate's second half: the candidate judged by its answers, against the stable revision on the same window's
traffic (labels joined by id, quality/outcomes.py). Pure: outcomes in, a verdict out.

Accuracy is judged for non-inferiority with margin MAX_ACCURACY_DROP: the candidate's accuracy minus the stable
one's, d, is weighed with Wald's sequential probability ratio test between "at the margin" (d = -MAX_ACCURACY_DROP)
and "ALTERNATIVE_DROP further below" (by a normal approximation of d's estimate), so it may be read at every poll
within the error budget the gate shares over its steps (1 - CONFIDENCE). A breach is called when the evidence for
the worse candidate reaches log(1/alpha); the check passes only with MIN_LABELS labels on each revision and the
evidence leaning toward the margin or better (never for want of labels). The prediction mix breaches when its total
variation distance from the stable mix is above MAX_MIX_SHIFT and its chi-square test says so at alpha.
tests/unit/test_quality_gate_simulation.py shows what this promises.

A regressor is judged the same way on its mean absolute error (MAE), for non-inferiority with the relative margin
MAX_ERROR_INCREASE: the difference of the two MAEs, d, is weighed between "at the margin" (d = MAX_ERROR_INCREASE
times the stable MAE) and "ALTERNATIVE_INCREASE further above" (a candidate 25% worse, at the default margin), with
the same sequential test, budget and labels. Its predicted values breach when their two-sample Kolmogorov-Smirnov
distance from the stable ones is above MAX_PREDICTION_SHIFT and the test says so at alpha.
tests/unit/test_regression_gate_simulation.py shows what this promises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from iris_tools.quality.outcomes import (LABEL_SHARE_ALPHA, LabelShare, MixShift, RevisionOutcome, ValueShift, label_share, mix_shift,
                                        value_shift)

ALTERNATIVE_DROP = 0.08  # the test tells a candidate at the margin from one this many points further below it
ALTERNATIVE_INCREASE = 0.20  # a regressor: from one whose MAE is this much more again (relative to the stable's)


@dataclass(frozen=True)
class QualityThresholds:
    max_accuracy_drop: float = 0.02
    max_mix_shift: float = 0.10
    min_labels: int = 50
    max_error_increase: float = 0.05  # a regressor: its MAE at most this much above the stable's (relative)
    max_prediction_shift: float = 0.10  # a regressor: the KS distance of its predicted values from the stable's


@dataclass
class QualityVerdict:
    decision: str  # promote | hold | rollback
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    stable: dict[str, Any] = field(default_factory=dict)
    evidence: float | None = None
    mix: MixShift | ValueShift | None = None
    wants_labels: bool = False  # held only for labels not yet back
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    seen: dict[str, int] = field(default_factory=dict)  # what the look read: predictions (every revision), labels
    shares: LabelShare | None = None  # each side's labelled share, and the sample-ratio check on them

    def as_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": self.reasons, "candidate": self.candidate,
                "stable": self.stable, "evidence": None if self.evidence is None else round(self.evidence, 3),
                "mix": None if self.mix is None else self.mix.as_json(), "wants_labels": self.wants_labels,
                "thresholds": asdict(self.thresholds), "seen": self.seen,
                "label_share": None if self.shares is None else self.shares.as_json()}


def _summary(outcome: RevisionOutcome) -> dict[str, Any]:
    """One side's figures in the rollout's record (and the console): its accuracy, and its calibration where clients
    asked for probabilities (shown, not judged: a candidate as right but far less sure is visible before it moves
    users)."""
    return {"labelled": outcome.labelled, "correct": outcome.correct, "accuracy": outcome.accuracy,
            "predictions": outcome.predictions, "coverage": outcome.coverage, "calibrated": outcome.calibrated,
            "brier": None if outcome.brier is None else round(outcome.brier, 6)}


def accuracy_evidence(candidate: RevisionOutcome, stable: RevisionOutcome, margin: float) -> float:
    """The log-likelihood ratio of the observed accuracy difference for a candidate ALTERNATIVE_DROP below the margin
    against one at the margin. Each accuracy's variance is estimated with one success and one failure added (so
    a perfect score still has some), as Agresti and Caffo do."""
    n_c, n_s = candidate.labelled, stable.labelled
    p_c, p_s = candidate.correct / n_c, stable.correct / n_s
    q_c, q_s = (candidate.correct + 1) / (n_c + 2), (stable.correct + 1) / (n_s + 2)
    variance = q_c * (1 - q_c) / n_c + q_s * (1 - q_s) / n_s
    at_margin, worse = -margin, -margin - ALTERNATIVE_DROP
    d = p_c - p_s
    return ((d - at_margin) ** 2 - (d - worse) ** 2) / (2 * variance)


def error_evidence(candidate: RevisionOutcome, stable: RevisionOutcome, margin: float) -> float:
    """A regressor's log-likelihood ratio: the observed MAE difference for a candidate ALTERNATIVE_INCREASE (of the
    stable MAE) above the margin against one at the margin, with each mean's variance estimated from its own
    absolute errors (a normal approximation of the difference of two means)."""
    n_c, n_s = candidate.labelled, stable.labelled
    variance = (candidate.mae_variance or 0.0) / n_c + (stable.mae_variance or 0.0) / n_s
    if variance <= 0.0:
        variance = 1e-12 + 1e-9 * max(candidate.mae or 0.0, stable.mae or 0.0) ** 2 / min(n_c, n_s)
    scale = stable.mae or 0.0
    at_margin, worse = margin * scale, (margin + ALTERNATIVE_INCREASE) * scale
    d = (candidate.mae or 0.0) - scale
    return ((d - at_margin) ** 2 - (d - worse) ** 2) / (2 * variance)


def _weigh(verdict: QualityVerdict, candidate: RevisionOutcome, stable: RevisionOutcome,
           thresholds: QualityThresholds, needed: float, weighed: Callable[[], tuple[float, str]]) -> bool:
    """The sequential decision both kinds of model share: `weighed()` gives the evidence for a worse candidate and
    the sentence that says it. A breach when the evidence reaches `needed`; a hold for labels below MIN_LABELS or
    with none; a hold while it leans toward worse; True (passes) only with the labels and evidence leaning away."""
    if not (candidate.labelled and stable.labelled):
        verdict.wants_labels = True
        verdict.reasons.append(f"no labels back yet ({candidate.labelled} on the candidate, {stable.labelled} on the "
                               f"stable revision): holding for labels")
        return False
    evidence, text = weighed()
    verdict.evidence = evidence
    if evidence >= needed:
        verdict.decision = "rollback"
        verdict.reasons.append(f"{text}: the candidate is worse")
    elif min(candidate.labelled, stable.labelled) < thresholds.min_labels:
        verdict.wants_labels = True
        verdict.reasons.append(f"{text}; fewer than {thresholds.min_labels} labels on each (MIN_LABELS): holding for "
                               f"labels")
    elif evidence > 0:
        verdict.reasons.append(f"{text}; not yet decided: holding for more labels")
    else:
        verdict.reasons.append(f"{text}: within the margin")
        return True
    return False


def _settle(verdict: QualityVerdict, passes: bool, shift: MixShift | ValueShift | None, limit: float, alpha: float,
            moved: Callable[[], str], candidate: RevisionOutcome, stable: RevisionOutcome,
            same_window: bool) -> QualityVerdict:
    """The verdict's end, for both kinds of model: a rollback when the answers' distribution moved more than
    `limit` and its test says so at `alpha` (`moved()` says how); else a hold unless the main check passed and the
    labels reach both sides alike (the sample-ratio check: a mismatch never promotes; it never rolls back either,
    as the labels it doubts cannot be the reason to). Shares are compared only when both sides' figures come from
    the same window (at 100% the stable's are an earlier step's, whose labels had longer to come back)."""
    verdict.mix = shift
    verdict.shares = shares = label_share(candidate, stable) if same_window else None
    if shift is not None and shift.distance > limit and shift.p_value < alpha:
        verdict.decision = "rollback"
        verdict.reasons.append(moved())
    if shares is not None and shares.mismatched:
        verdict.reasons.append(
            f"labels reach {100 * shares.candidate:.1f}% of the candidate's answers and {100 * shares.stable:.1f}% of "
            f"the stable revision's (chi-square p = {shares.p_value:.2g}, below {LABEL_SHARE_ALPHA:g}): more "
            f"than chance allows, a sign of a broken or gamed label pipeline; holding, never promoting, until they "
            f"agree")
    if verdict.decision != "rollback" and (not passes or (shares is not None and shares.mismatched)):
        verdict.decision = "hold"
    return verdict


def judge_quality(candidate: RevisionOutcome, stable: RevisionOutcome, thresholds: QualityThresholds,
                  alpha: float, same_window: bool = True) -> QualityVerdict:
    """The verdict on a step's answers: a classifier's accuracy and mix, or (numbers) a regressor's MAE and
    predicted values."""
    if candidate.regression or stable.regression:
        return judge_regression(candidate, stable, thresholds, alpha, same_window)
    verdict = QualityVerdict("promote", [], _summary(candidate), _summary(stable), thresholds=thresholds)
    needed = math.log(1.0 / alpha)

    def weighed() -> tuple[float, str]:
        evidence = accuracy_evidence(candidate, stable, thresholds.max_accuracy_drop)
        return evidence, (f"accuracy {100 * candidate.accuracy:.1f}% of {candidate.labelled} labelled against the "
                          f"stable {100 * stable.accuracy:.1f}% of {stable.labelled}: evidence {evidence:.1f} of the "
                          f"{needed:.1f} that calls a drop of more than {100 * thresholds.max_accuracy_drop:g} points "
                          f"(sequential test, the margin against {100 * ALTERNATIVE_DROP:g} points below it)")

    passes = _weigh(verdict, candidate, stable, thresholds, needed, weighed)
    shift = mix_shift(candidate.mix, stable.mix)
    return _settle(verdict, passes, shift, thresholds.max_mix_shift, alpha, lambda: (
        f"prediction mix moved {shift.distance:.3f} (total variation) from the stable one, above MAX_MIX_SHIFT "
        f"{thresholds.max_mix_shift:g} (chi-square p = {shift.p_value:.2g})"), candidate, stable, same_window)


def _regression_summary(outcome: RevisionOutcome) -> dict[str, Any]:
    return {"labelled": outcome.labelled, "mae": outcome.mae, "predictions": outcome.predictions,
            "coverage": outcome.coverage}


def judge_regression(candidate: RevisionOutcome, stable: RevisionOutcome, thresholds: QualityThresholds,
                     alpha: float, same_window: bool = True) -> QualityVerdict:
    verdict = QualityVerdict("promote", [], _regression_summary(candidate), _regression_summary(stable),
                             thresholds=thresholds)
    needed = math.log(1.0 / alpha)
    margin = thresholds.max_error_increase

    def weighed() -> tuple[float, str]:
        evidence = error_evidence(candidate, stable, margin)
        return evidence, (f"mean absolute error {candidate.mae:.6g} over {candidate.labelled} labelled against the "
                          f"stable {stable.mae:.6g} over {stable.labelled}: evidence {evidence:.1f} of the "
                          f"{needed:.1f} that calls an increase of more than {100 * margin:g}% (sequential test, the "
                          f"margin against {100 * ALTERNATIVE_INCREASE:g}% above it)")

    passes = _weigh(verdict, candidate, stable, thresholds, needed, weighed)
    shift = value_shift(candidate, stable)
    return _settle(verdict, passes, shift, thresholds.max_prediction_shift, alpha, lambda: (
        f"predicted values moved {shift.distance:.3f} (Kolmogorov-Smirnov distance) from the stable ones, above "
        f"MAX_PREDICTION_SHIFT {thresholds.max_prediction_shift:g} (p = {shift.p_value:.2g})"), candidate, stable,
                   same_window)
