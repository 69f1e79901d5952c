"""A rollout's settings, as the rollout code reads them: built once from the parsed environment
(iris_tools/environment.py declares every variable, its default by target, unit and help)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from iris_tools import environment
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.gate import Thresholds
from iris_tools.rollout.quality_gate import QualityThresholds
from iris_tools.rollout.records import Plan


@dataclass(frozen=True)
class RolloutSettings:
    service: str = "iris"
    plan: Plan = field(default_factory=lambda: Plan.parse("5 25 50 100"))
    step_seconds: float = 10.0
    max_hold_seconds: float = 30.0  # a step with too few candidate requests waits this long, then rolls back
    poll_seconds: float = 1.0
    delay_seconds: float = 0.0  # how late the monitoring API reports (Cloud Monitoring: a few minutes)
    # How coarse its figures are in time (Cloud Run's are 60 s points; the local sampler reads Envoy's
    # counters, flushed every second, every second): a step's first this-many seconds are not judged,
    # so requests from before the step (the warm-up, a shadow replay, the step before) never count in it.
    resolution_seconds: float = 2.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    image: str = "iris"
    force: bool = False
    public: bool = False
    service_account: str | None = None
    min_agreement: float | None = None  # gate the first live step on a shadow comparison (off by default)
    warmup_requests: int = 20  # sent to the candidate's tag URL before its first live step
    shadow_inputs: int = 500
    shadow_freshness: str = "1h"
    plan_given: bool = False  # STEPS was set, not defaulted: a resume refuses a plan other than its own
    labels: str | None = None  # LABELS: "feedback" or a CSV path; None: the gate judges the server only
    paired: bool = True  # with LABELS: the paired check at 0% before the first step (rollout/paired.py)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    label_wait_seconds: float = 30.0
    rollback_window_s: float = 0.0  # after a promotion, the old stable revision is kept warm this long

    @classmethod
    def from_environment(cls, env: environment.Environment) -> "RolloutSettings":
        plan = env["STEPS"]
        step_seconds = env["STEP_SECONDS"]
        thresholds = Thresholds(max_error_rate=env["MAX_ERROR_RATE"], max_latency_ratio=env["MAX_LATENCY_RATIO"],
                                min_latency_delta_ms=env["MIN_LATENCY_DELTA_MS"], min_requests=env["MIN_REQUESTS"],
                                confidence=env["CONFIDENCE"], steps=len(plan.percents))
        hold = env["MAX_HOLD_SECONDS"]
        return cls(service=env["SERVICE"], plan=plan, step_seconds=step_seconds,
                   max_hold_seconds=3 * step_seconds if hold is None else hold,
                   poll_seconds=env["POLL_SECONDS"], delay_seconds=env["MONITORING_DELAY_S"],
                   resolution_seconds=env["METRIC_RESOLUTION_S"], thresholds=thresholds, image=env["IMAGE"],
                   force=env["FORCE"], public=env["PUBLIC"], service_account=env["SERVICE_ACCOUNT"],
                   min_agreement=env["MIN_AGREEMENT"], warmup_requests=env["WARMUP_REQUESTS"],
                   shadow_inputs=env["SHADOW_INPUTS"], shadow_freshness=env["SHADOW_FRESHNESS"],
                   plan_given="STEPS" in env.given, labels=env["LABELS"], paired=env["PAIRED"],
                   quality=QualityThresholds(env["MAX_ACCURACY_DROP"], env["MAX_MIX_SHIFT"], env["MIN_LABELS"],
                                             env["MAX_ERROR_INCREASE"], env["MAX_PREDICTION_SHIFT"]),
                   label_wait_seconds=env["LABEL_WAIT_S"], rollback_window_s=env["ROLLBACK_WINDOW"])

    @classmethod
    def for_target(cls, target: str, environ: Mapping[str, str] = os.environ) -> "RolloutSettings":
        """Parsed from `environ` with the defaults of `target`; RolloutError names a bad variable."""
        try:
            return cls.from_environment(environment.read({**environ, "TARGET": target}, "rollout", "quality"))
        except environment.SettingError as exc:
            raise RolloutError(str(exc)) from None

    @property
    def stale_after_s(self) -> float:
        """A lock from another host that has not moved in this long belongs to a rollout that is gone."""
        return 3 * self.step_seconds + self.max_hold_seconds + 120
