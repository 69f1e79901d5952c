"""A rollout's settings, read from the environment with defaults by target (see `python -m iris_tools.rollout --help`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.gate import Thresholds


PAUSE = "pause"  # a step that holds the split until a person runs `make promote` (or `make rollback`)


def percents_of(steps: list) -> list[int]:
    """A plan's judged steps: its percentages, pauses left out."""
    return [step for step in steps if step != PAUSE]


def percent_at(steps: list, index: int) -> int:
    """The candidate's share at step `index`: a pause keeps the share of the step before it."""
    return next((step for step in reversed(steps[: index + 1]) if step != PAUSE), 0)


@dataclass
class Settings:
    service: str = "iris"
    steps: list[int | str] = field(default_factory=lambda: [5, 25, 50, 100])
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

    @classmethod
    def for_target(cls, target: str, environ: dict[str, str] = os.environ) -> "Settings":
        """Defaults by target (Cloud Monitoring's delay sets the Cloud Run ones), each overridable."""
        cloud = target == "cloudrun"
        defaults = cls(step_seconds=600.0 if cloud else 10.0, poll_seconds=30.0 if cloud else 1.0,
                       delay_seconds=180.0 if cloud else 0.0, resolution_seconds=60.0 if cloud else 2.0,
                       thresholds=Thresholds(min_requests=100 if cloud else 50))

        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw in (None, ""):
                return default
            try:
                value = float(raw)
            except ValueError:
                raise RolloutError(f"{name}={raw!r} is not a number") from None
            if value < 0:
                raise RolloutError(f"{name}={raw!r} must not be negative")
            return value

        steps_text = environ.get("STEPS") or " ".join(map(str, defaults.steps))
        try:
            steps = [PAUSE if step == PAUSE else int(step) for step in steps_text.replace(",", " ").split()]
        except ValueError:
            raise RolloutError(f"STEPS={steps_text!r}: whole percentages and pauses, for example "
                               f"STEPS=\"5 25 pause 50 100\"") from None
        percents = percents_of(steps)
        if not percents or percents != sorted(set(percents)) or percents[0] <= 0 or steps[-1] != 100 \
                or steps[0] == PAUSE or any(a == b == PAUSE for a, b in zip(steps, steps[1:])):
            raise RolloutError(f"STEPS={steps_text!r}: increasing percentages from above 0 that end at 100, with "
                               f"a pause (held until `make promote`) after any of them but the last")
        step_seconds = number("STEP_SECONDS", defaults.step_seconds)
        thresholds = Thresholds(
            max_error_rate=number("MAX_ERROR_RATE", defaults.thresholds.max_error_rate),
            max_latency_ratio=number("MAX_LATENCY_RATIO", defaults.thresholds.max_latency_ratio),
            min_latency_delta_ms=number("MIN_LATENCY_DELTA_MS", defaults.thresholds.min_latency_delta_ms),
            min_requests=int(number("MIN_REQUESTS", defaults.thresholds.min_requests)),
            confidence=number("CONFIDENCE", defaults.thresholds.confidence),
            steps=len(percents))
        if not 0.5 <= thresholds.confidence < 1:
            raise RolloutError(f"CONFIDENCE={thresholds.confidence:g}: a fraction from 0.5 to below 1, "
                               f"for example 0.99")
        min_agreement = number("MIN_AGREEMENT", -1.0)
        if min_agreement > 1:
            raise RolloutError(f"MIN_AGREEMENT={min_agreement:g}: a fraction from 0 to 1")
        return cls(service=environ.get("SERVICE") or "iris", steps=steps, step_seconds=step_seconds,
                   min_agreement=None if min_agreement < 0 else min_agreement,
                   warmup_requests=int(number("WARMUP_REQUESTS", defaults.warmup_requests)),
                   max_hold_seconds=number("MAX_HOLD_SECONDS", 3 * step_seconds),
                   poll_seconds=number("POLL_SECONDS", defaults.poll_seconds),
                   delay_seconds=number("MONITORING_DELAY_S", defaults.delay_seconds),
                   resolution_seconds=number("METRIC_RESOLUTION_S", defaults.resolution_seconds),
                   thresholds=thresholds, image=environ.get("IMAGE") or "iris",
                   force=environ.get("FORCE") in ("1", "true", "yes"),
                   public=environ.get("PUBLIC") in ("1", "true", "yes"),
                   service_account=environ.get("SERVICE_ACCOUNT") or None)
