"""The paired judgement at 0%: the candidate asked what users asked the stable revision, judged on the same inputs.

Before any user moves (and in `make shadow`), the stable revision's newest answers to users whose true labels came
back (the outcome store's replay set, at most SHADOW_INPUTS of the last SHADOW_FRESHNESS) are replayed to the
candidate's tag URL, marked `X-Replay: shadow`: Envoy's figures of the candidate count them as requests to its tag,
but no step's window contains them and no outcome counts them as a user's answer.

Each input then has two answers to one truth, so the two versions are compared on the inputs where they differ:

  a classifier   McNemar's comparison on the discordant pairs, for non-inferiority: with b inputs only the stable
                 revision got right and c only the candidate did, of n, the accuracy difference d = (c - b) / n has
                 variance ((b + c) / n - d^2) / n (one discordant pair added, so no variance is 0). The candidate
                 is worse when d is below -MAX_ACCURACY_DROP by more than chance allows.
  a regressor    the paired difference of absolute errors, e = |candidate - truth| - |stable - truth|: worse when its
                 mean is above MAX_ERROR_INCREASE times the stable revision's MAE by more than chance allows.

It is sequential: the replies are judged at LOOKS evenly spaced looks, with O'Brien-Fleming's spending of the check's
error budget (Lan and DeMets), each look given its increment of the budget (a union bound: never more than the
budget in all). The check has half the gate's budget (1 - CONFIDENCE); the live steps share the other half. A
candidate rolled back here never gets traffic. Too few labelled answers (fewer than MIN_LABELS) and the check says
so and leaves the judgement to the live steps. tests/unit/test_paired_simulation.py shows what it promises.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import norm

from iris_tools.quality.aggregate import LabelledAnswer
from iris_tools.quality.outcomes import is_number
from iris_tools.quality.sources import OutcomeReader, since
from iris_tools.rollout.invoke import ask
from iris_tools.rollout.settings import RolloutSettings

LOOKS = 3


def spent(alpha: float, fraction: float) -> float:
    """The error budget O'Brien-Fleming's spending function has used by `fraction` of the replies (Lan-DeMets)."""
    if fraction <= 0:
        return 0.0
    return min(alpha, 2.0 * norm.sf(norm.isf(alpha / 2.0) / math.sqrt(min(1.0, fraction))))


@dataclass
class PairedVerdict:
    decision: str  # rollback | pass | skipped
    task: str
    n: int
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "task": self.task, "n": self.n, "reasons": self.reasons,
                **self.figures}


def _looks(n: int) -> list[int]:
    return sorted({max(1, math.ceil(k * n / LOOKS)) for k in range(1, LOOKS + 1)})


def judge_classes(pairs: Sequence[tuple[bool, bool]], margin: float, alpha: float) -> PairedVerdict:
    """(stable right, candidate right) per input: rolled back when the candidate's accuracy is below the stable
    one's by more than `margin`, at the budget `alpha`."""
    n = len(pairs)
    verdict = PairedVerdict("pass", "classifier", n)
    used = 0.0
    for look in _looks(n):
        b = sum(1 for s, c in pairs[:look] if s and not c)
        c = sum(1 for s, c in pairs[:look] if c and not s)
        d = (c - b) / look
        variance = max(((b + c + 1) / look - d * d) / look, 1e-12)
        p_value = float(norm.cdf((d + margin) / math.sqrt(variance)))  # of a difference this low at the margin
        budget = spent(alpha, look / n) - used
        used += budget
        verdict.figures = {
            "stable_accuracy": sum(s for s, _ in pairs[:look]) / look,
            "candidate_accuracy": sum(c for _, c in pairs[:look]) / look,
            "only_stable_right": b, "only_candidate_right": c, "difference": d, "p_value": p_value,
            "looked_at": look, "budget": alpha}
        if p_value < budget:
            verdict.decision = "rollback"
            verdict.reasons.append(
                f"on the same {look} labelled inputs the candidate is right on {100 * verdict.figures['candidate_accuracy']:.1f}%, "
                f"the stable revision on {100 * verdict.figures['stable_accuracy']:.1f}% ({b} only the stable got "
                f"right, {c} only the candidate): a drop of more than {100 * margin:g} points, p = {p_value:.2g} "
                f"(McNemar, paired, sequential): the candidate is worse")
            return verdict
    verdict.reasons.append(
        f"on the same {n} labelled inputs the candidate is right on {100 * verdict.figures['candidate_accuracy']:.1f}%, "
        f"the stable revision on {100 * verdict.figures['stable_accuracy']:.1f}% ({verdict.figures['only_stable_right']} "
        f"only the stable got right, {verdict.figures['only_candidate_right']} only the candidate): no drop of more "
        f"than {100 * margin:g} points shown")
    return verdict


def judge_errors(pairs: Sequence[tuple[float, float]], margin: float, alpha: float) -> PairedVerdict:
    """(stable's absolute error, candidate's) per input: rolled back when the candidate's MAE is above the stable
    one's by more than `margin` of it, at the budget `alpha`."""
    n = len(pairs)
    verdict = PairedVerdict("pass", "regressor", n)
    used = 0.0
    for look in _looks(n):
        stable_mae = sum(s for s, _ in pairs[:look]) / look
        gaps = [c - s for s, c in pairs[:look]]
        mean = sum(gaps) / look
        variance = max(sum((g - mean) ** 2 for g in gaps) / max(1, look - 1) / look,
                       1e-12 * max(1.0, stable_mae) ** 2)
        p_value = float(norm.sf((mean - margin * stable_mae) / math.sqrt(variance)))
        budget = spent(alpha, look / n) - used
        used += budget
        verdict.figures = {"stable_mae": stable_mae, "candidate_mae": stable_mae + mean, "difference": mean,
                           "p_value": p_value, "looked_at": look, "budget": alpha}
        if p_value < budget:
            verdict.decision = "rollback"
            verdict.reasons.append(
                f"on the same {look} labelled inputs the candidate's mean absolute error is "
                f"{verdict.figures['candidate_mae']:.6g} against the stable revision's {stable_mae:.6g}: more than "
                f"{100 * margin:g}% above it, p = {p_value:.2g} (paired difference of absolute errors, sequential): "
                f"the candidate is worse")
            return verdict
    verdict.reasons.append(
        f"on the same {n} labelled inputs the candidate's mean absolute error is "
        f"{verdict.figures['candidate_mae']:.6g} against the stable revision's {verdict.figures['stable_mae']:.6g}: "
        f"no increase of more than {100 * margin:g}% shown")
    return verdict


def replayed(url: str, answers: Sequence[LabelledAnswer], token: str | None, concurrency: int = 2
             ) -> tuple[list[tuple[LabelledAnswer, Any]], int]:
    """Each answer's row asked of the candidate at `url` (X-Replay: shadow): (answer, the candidate's reply) for
    those that answered, and how many failed."""
    with ThreadPoolExecutor(concurrency) as pool:
        replies = list(pool.map(lambda answer: ask(url, answer.row, token, "shadow"), answers))
    answered = [(answer, reply[0]) for answer, reply in zip(answers, replies) if reply[3] is None
                and reply[0] is not None]
    return answered, len(answers) - len(answered)


def judge_replies(answered: Sequence[tuple[LabelledAnswer, Any]], accuracy_drop: float, error_increase: float,
                  alpha: float) -> PairedVerdict:
    """The pairs judged as the model's kind says: classes, or numbers."""
    if answered and all(is_number(a.label) and is_number(reply) for a, reply in answered):
        return judge_errors([(abs(float(a.answer) - float(a.label)), abs(float(reply) - float(a.label)))
                             for a, reply in answered], error_increase, alpha)
    return judge_classes([(a.answer == a.label, reply == a.label) for a, reply in answered], accuracy_drop, alpha)


def paired_check(reader: OutcomeReader, stable: str, url: str, token: str | None, settings: RolloutSettings,
                 alpha: float, say: Callable[[str], None]) -> PairedVerdict:
    """The stable revision's labelled answers (SHADOW_INPUTS of the last SHADOW_FRESHNESS) replayed to the candidate
    at `url` and judged, within `alpha`; skipped (saying why) with fewer than MIN_LABELS of them."""
    answers = reader.labelled_answers(stable, since(settings.shadow_freshness, time.time()), settings.shadow_inputs)
    quality = settings.quality
    min_labels, accuracy_drop, error_increase = quality.min_labels, quality.max_accuracy_drop, quality.max_error_increase
    if len(answers) < min_labels:
        verdict = PairedVerdict("skipped", "-", len(answers), [
            f"only {len(answers)} labelled answers of the stable revision to replay (MIN_LABELS {min_labels}): the "
            f"paired check is skipped, and the live steps judge the candidate's answers"])
        say(f"paired check: {verdict.reasons[0]}")
        return verdict
    say(f"paired check: replaying {len(answers)} labelled inputs the stable revision answered to the candidate "
        f"at {url} (no user sees these answers) ...")
    answered, failed = replayed(url, answers, token)
    if not answered:
        verdict = PairedVerdict("rollback", "-", 0, [f"every one of the {len(answers)} replays to the candidate "
                                                     f"failed: it cannot answer what users ask"])
        say(f"paired check: ROLLBACK: {verdict.reasons[0]}")
        return verdict
    verdict = judge_replies(answered, accuracy_drop, error_increase, alpha)
    verdict.figures["failed_replays"] = failed
    if failed:
        verdict.reasons.append(f"{failed} of {len(answers)} replays failed")
    say(f"paired check: {verdict.decision.upper()}: " + "; ".join(verdict.reasons))
    return verdict
