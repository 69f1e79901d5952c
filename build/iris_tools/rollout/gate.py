"""The decision at each step: the candidate's figures against the stable revision's, over one window.

Pure: figures in, a verdict out, with the figures and thresholds that decided it, as one line for a
person and as JSON for a machine. Three verdicts:

  promote   healthy, and enough requests seen: move to the next step
  hold      too few candidate requests to judge: keep the step (never counted as healthy)
  rollback  a breach: 5xx rate, latency p99, or the candidate not ready

Latency tells noise from a fault by two conditions at once: the candidate's p99 must exceed the
stable p99 by MAX_LATENCY_RATIO times AND by MIN_LATENCY_DELTA_MS. In 6 s windows on this machine
a healthy candidate's p99 read 0.5x to 1.0x the stable one's; latencies are bucket bounds (whole
milliseconds from Envoy locally, Cloud Monitoring's buckets on Cloud Run), so a small absolute
delta is noise whatever its ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figures:
    """One revision over one window."""

    requests: int = 0
    errors: int = 0  # 5xx
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    max_latency_ratio: float = 2.0
    min_latency_delta_ms: float = 5.0
    min_requests: int = 50


@dataclass
class Verdict:
    decision: str  # promote | hold | rollback
    reasons: list[str] = field(default_factory=list)
    candidate: Figures = field(default_factory=Figures)
    stable: Figures = field(default_factory=Figures)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def line(self) -> str:
        c, s, t = self.candidate, self.stable, self.thresholds
        rate = "-" if c.error_rate is None else f"{100 * c.error_rate:.2f}%"
        stable_rate = "-" if s.error_rate is None else f"{100 * s.error_rate:.2f}%"
        return (f"{self.decision.upper()}: candidate {c.requests} req, 5xx {rate} (max {100 * t.max_error_rate:g}%), "
                f"p99 {_ms(c.p99_ms)} vs stable {_ms(s.p99_ms)} over {s.requests} req, 5xx {stable_rate} "
                f"(breach above {t.max_latency_ratio:g}x and +{t.min_latency_delta_ms:g} ms); "
                + "; ".join(self.reasons))

    def as_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": self.reasons, "candidate": asdict(self.candidate),
                "stable": asdict(self.stable), "thresholds": asdict(self.thresholds)}


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
    rate = candidate.error_rate
    if rate is not None and rate > thresholds.max_error_rate:
        verdict.decision = "rollback"
        verdict.reasons.append(f"5xx rate {100 * rate:.2f}% is above {100 * thresholds.max_error_rate:g}%")
    if candidate.p99_ms is not None and stable.p99_ms is not None:
        limit = max(stable.p99_ms * thresholds.max_latency_ratio, stable.p99_ms + thresholds.min_latency_delta_ms)
        if candidate.p99_ms > limit:
            verdict.decision = "rollback"
            verdict.reasons.append(f"p99 {_ms(candidate.p99_ms)} is above {_ms(limit)} "
                                   f"(stable p99 {_ms(stable.p99_ms)})")
    if verdict.decision == "rollback":
        return verdict
    if candidate.requests < thresholds.min_requests:
        verdict.decision = "hold"
        verdict.reasons.append(f"{candidate.requests} candidate requests, fewer than {thresholds.min_requests}: "
                               f"too few to judge")
        return verdict
    verdict.reasons.append("healthy")
    return verdict
