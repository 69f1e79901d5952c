"""The decision at each step: the candidate's figures against the stable revision's, over one window.

Pure: figures in, a verdict out, with the figures and thresholds that decided it, as one line for a
person and as JSON for a machine. Three verdicts:

  promote   healthy, and enough requests seen: move to the next step
  hold      too few candidate requests to judge, figures above a limit whose evidence is not yet
            decided, no stable latency baseline (fewer than MIN_REQUESTS stable requests), or the
            stable revision itself breaching: keep the step (never counted as healthy, never blamed
            on the candidate)
  rollback  a breach: 5xx rate, latency p99, or the candidate not ready

A breach is called on evidence, not on one unlucky reading, and not on one of many looks. The latency
limit is the stable p99 times MAX_LATENCY_RATIO and plus MIN_LATENCY_DELTA_MS, whichever is higher:
latencies are bucket bounds (Envoy's buckets locally, Cloud Monitoring's on Cloud Run), so a small
absolute delta is noise whatever its ratio. A candidate within that limit has at most 1% of its requests
slower than it; within the 5xx limit, at most MAX_ERROR_RATE of them failing. Each check counts the
requests beyond its limit and weighs them with Wald's sequential probability ratio test (a candidate at
the limit against one at 3x it), which may be read at every poll without multiplying false alarms;
1 - CONFIDENCE is shared over the rollout's steps (tests/unit/test_gate_simulation.py). A real fault
(every answer failing or 30 ms late) breaches on its first 5 requests; one cold request in 50, whose p99
alone reads 4x the stable one, does not. Promoting asks the evidence to lean the other way (a log-likelihood
ratio at or below 0: the figures fit a candidate at the limit at least as well as one at 3x it), so a candidate
showing 4 failures in its first 20 answers is held for more requests rather than passed for want of proof.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from iris_tools.google.monitoring import Figures

TAIL = 0.01  # the share of requests a p99 leaves above itself
ALTERNATIVE = 3.0  # the sequential test tells a candidate at the limit from one at this many times it


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    min_latency_delta_ms: float = 5.0
    min_requests: int = 50
    confidence: float = 0.99
    steps: int = 1  # the rollout's steps: 1 - confidence is spent over them, an equal share each
    paired: bool = False  # a paired check at 0% comes first (rollout/paired.py): it has half of 1 - confidence

    @property
    def alpha_paired(self) -> float:
        return (1.0 - self.confidence) / 2.0

    @property
    def alpha_per_step(self) -> float:
        return (1.0 - self.confidence) / (2.0 if self.paired else 1.0) / max(1, self.steps)

    def latency_limit(self, stable_p99_ms: float) -> float:
        """The p99 above which a candidate breaches: MAX_LATENCY_RATIO x or + MIN_LATENCY_DELTA_MS over the
        stable p99, whichever is higher."""
        return max(stable_p99_ms * self.max_latency_ratio, stable_p99_ms + self.min_latency_delta_ms)


def evidence(count: int, n: int, share: float) -> float:
    """The log-likelihood ratio of `count` of `n` beyond a limit, for a source at ALTERNATIVE x `share` against
    one at `share` (Wald's sequential probability ratio test). Its running value can be looked at after every
    request: the chance that a source within the limit ever reaches log(1 / alpha) is at most alpha, however
    many looks are taken, so polling often does not multiply false alarms."""
    high = min(ALTERNATIVE * share, (1.0 + share) / 2)
    return count * math.log(high / share) + (n - count) * math.log((1.0 - high) / (1.0 - share))


def evidence_needed(alpha: float) -> float:
    return math.log(1.0 / alpha)


def chance_of_at_least(count: int, n: int, rate: float) -> float:
    """P(X >= count) for X ~ Binomial(n, rate): how often a source failing at `rate` shows `count` of `n`."""
    if count <= 0 or rate >= 1:
        return 1.0
    if rate <= 0 or count > n:
        return 0.0
    if count <= n * rate:  # at or below the mean: the tail is about a half or more; sum the short side
        return max(0.0, 1.0 - sum(math.exp(_log_pmf(i, n, rate)) for i in range(count)))
    total = 0.0
    for i in range(count, n + 1):  # above the mean the terms only fall
        term = math.exp(_log_pmf(i, n, rate))
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, total)


def _log_pmf(i: int, n: int, rate: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(rate) + (n - i) * math.log1p(-rate))


@dataclass
class Verdict:
    decision: str  # promote | hold | rollback
    reasons: list[str] = field(default_factory=list)
    candidate: Figures = field(default_factory=Figures)
    stable: Figures = field(default_factory=Figures)
    thresholds: Thresholds = field(default_factory=Thresholds)
    insufficient: bool = False  # rolled back only for too few requests: not judged, so not barred
    quality: dict[str, Any] | None = None  # the quality check's verdict (quality_gate.QualityVerdict.as_json())

    def line(self) -> str:
        c, s, t = self.candidate, self.stable, self.thresholds
        rate = "-" if c.error_rate is None else f"{100 * c.error_rate:.2f}%"
        stable_rate = "-" if s.error_rate is None else f"{100 * s.error_rate:.2f}%"
        return (f"{self.decision.upper()}: candidate {c.requests} req, 5xx {rate} (max {100 * t.max_error_rate:g}%), "
                f"p99 {_ms(c.p99_ms)} vs stable {_ms(s.p99_ms)} over {s.requests} req, 5xx {stable_rate} "
                f"(breach above {t.max_latency_ratio:g}x and +{t.min_latency_delta_ms:g} ms, "
                f"at {100 * t.confidence:g}% confidence); " + "; ".join(self.reasons))

    def as_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": self.reasons, "candidate": asdict(self.candidate),
                "stable": asdict(self.stable), "thresholds": asdict(self.thresholds),
                "insufficient": self.insufficient, "quality": self.quality}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "Verdict":
        thresholds = document.get("thresholds")
        known = {name for name in Thresholds.__dataclass_fields__}
        return cls(str(document.get("decision", "")), [str(reason) for reason in document.get("reasons") or []],
                   Figures.from_json(document.get("candidate")), Figures.from_json(document.get("stable")),
                   Thresholds(**{k: v for k, v in thresholds.items() if k in known})
                   if isinstance(thresholds, dict) else Thresholds(),
                   bool(document.get("insufficient", False)),
                   document.get("quality") if isinstance(document.get("quality"), dict) else None)


def _ms(value: float | None) -> str:
    return "-" if value is None else ("inf" if value == float("inf") else f"{value:g} ms")


def judge(candidate: Figures, stable: Figures, thresholds: Thresholds, candidate_ready: bool = True) -> Verdict:
    """The verdict for one window. Breaches are checked before the request count: a candidate that
    fails its first requests is rolled back without waiting for more."""
    verdict = Verdict("promote", [], candidate, stable, thresholds)
    if not candidate_ready:
        verdict.decision = "rollback"
        verdict.reasons.append("the candidate revision is not ready")
        return verdict
    notes: list[str] = []
    undecided: list[str] = []

    def weigh(claim: str, limit: str, detail: str, count: int, share: float, what: str, at: str) -> None:
        """`count` of the candidate's requests beyond a limit that allows `share` of them: a breach when the
        sequential test's evidence reaches what this step may spend (else a note)."""
        found = evidence(count, candidate.requests, share)
        needed = evidence_needed(thresholds.alpha_per_step)
        text = (f"{count} of {candidate.requests} {what}: evidence {found:.1f} of the {needed:.1f} that calls a "
                f"breach (sequential test, {at} against {ALTERNATIVE:g}x it)")
        if found >= needed:
            verdict.decision = "rollback"
            verdict.reasons.append(f"{claim} is above {limit}{detail}: {text}")
        elif found > 0:
            undecided.append(f"{claim} above {limit}, not yet decided: {text}; holding for more requests")
        else:
            notes.append(f"{claim} above {limit} within chance: {text}")

    rate, max_rate = candidate.error_rate, thresholds.max_error_rate
    stable_rate = stable.error_rate
    if stable_rate is not None and stable_rate > max_rate and \
            chance_of_at_least(stable.errors, stable.requests, max_rate) < 1.0 - thresholds.confidence:
        # The baseline itself breaches (a downstream outage): neither blame the candidate nor promote it.
        verdict.decision = "hold"
        verdict.reasons.append(f"the stable revision itself breaches the 5xx limit ({stable.errors} of "
                               f"{stable.requests} answers 5xx, {100 * stable_rate:.2f}% > {100 * max_rate:g}%): "
                               f"holding, judging neither")
        return verdict
    if rate is not None and rate > max_rate:
        weigh(f"5xx rate {100 * rate:.2f}%", f"{100 * max_rate:g}%", "", candidate.errors, max_rate,
              "answers 5xx", f"a {100 * max_rate:g}% rate")
    baseline = stable.p99_ms is not None and stable.requests >= thresholds.min_requests
    if candidate.p99_ms is not None and baseline:
        limit = thresholds.latency_limit(stable.p99_ms)
        if candidate.p99_ms > limit:
            weigh(f"p99 {_ms(candidate.p99_ms)}", _ms(limit), f" (stable p99 {_ms(stable.p99_ms)})",
                  candidate.slower_than(limit), TAIL, f"requests slower than {_ms(limit)}", f"a p99 of {_ms(limit)}")
    if verdict.decision == "rollback":
        return verdict
    if candidate.p99_ms is not None and not baseline:
        verdict.decision = "hold"
        verdict.reasons.append(f"no latency baseline: the stable revision's p99 comes from {stable.requests} "
                               f"requests, fewer than {thresholds.min_requests}")
    elif candidate.requests < thresholds.min_requests:
        verdict.decision = "hold"
        verdict.reasons.append(f"{candidate.requests} candidate requests, fewer than {thresholds.min_requests}: "
                               f"too few to judge")
    elif undecided:
        verdict.decision = "hold"
    else:
        verdict.reasons.append("healthy")
    verdict.reasons.extend(undecided + notes)
    return verdict
