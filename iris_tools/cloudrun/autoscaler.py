"""How many instances a revision should run: Knative Serving's Pod Autoscaler (KPA), as Cloud Run runs it.

Pure and clock-free (every call is given the time), so its decisions can be checked against the KPA's formulas
on recorded load traces in milliseconds (tests/unit/test_autoscaler.py). The rules, from Knative Serving's
pkg/autoscaler/scaling/autoscaler.go and its config-autoscaler defaults:

- observed concurrency (requests in flight plus those queued for an instance) is averaged over the stable window
  (60 s, annotation `autoscaling.knative.dev/window`, 6 s to 1 h) and over the panic window (10% of it);
- the target per instance is `containerConcurrency` x the target utilization (70%), or the annotation
  `autoscaling.knative.dev/target` when it is lower (80 x 0.7 = 56 for Cloud Run's default concurrency);
- desired = ceil(average / target), from each window; a step up is at most `max-scale-up-rate` (1000) x the ready
  instances, a step down at most to ready / `max-scale-down-rate` (2);
- panic: when the panic window's desired count reaches 2x the ready instances. While panicking the count follows
  the panic window and never goes down; panic ends a whole stable window after its condition last held;
- scale to zero: only once the stable window has seen no request at all, and then after the grace period (30 s);
  demand at zero (the activator's poke) asks for one instance at once;
- bounds: `minScale` (only while the revision is reachable: it has traffic or a tag) and `maxScale`; a revision
  that has never been ready asks for its initial scale (1).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

TICK_S = 2.0  # Knative's autoscaler ticks every 2 s; demand at zero is acted on at once, between ticks
TARGET_UTILIZATION = 0.70
DEFAULT_TARGET = 100.0  # container-concurrency-target-default, for containerConcurrency 0 (unlimited)
STABLE_WINDOW_S = 60.0
MIN_WINDOW_S, MAX_WINDOW_S = 6.0, 3600.0
PANIC_WINDOW_FRACTION = 0.10
PANIC_THRESHOLD = 2.0
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
SCALE_TO_ZERO_GRACE_S = 30.0
INITIAL_SCALE = 1
BUCKET_S = 1.0  # observations are kept as per-second averages, as the queue-proxy reports them

WINDOW = "autoscaling.knative.dev/window"
TARGET = "autoscaling.knative.dev/target"
MIN_SCALE = ("autoscaling.knative.dev/minScale", "autoscaling.knative.dev/min-scale")
MAX_SCALE = ("autoscaling.knative.dev/maxScale", "autoscaling.knative.dev/max-scale")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScalingError(ValueError):
    """An autoscaling annotation the KPA would refuse: `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def duration_s(text: str) -> float:
    """A Go duration as Knative reads it ("6s", "1m30s", "1h") in seconds; ValueError if it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 60s, 1m30s or 1h")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


@dataclass(frozen=True)
class ScalingSpec:
    """What a revision's template asks of the autoscaler."""

    target: float = 80 * TARGET_UTILIZATION  # concurrency per instance the autoscaler aims at
    min_scale: int = 0
    max_scale: int = 0  # 0: no bound
    stable_window_s: float = STABLE_WINDOW_S

    @property
    def panic_window_s(self) -> float:
        return self.stable_window_s * PANIC_WINDOW_FRACTION

    @classmethod
    def of_template(cls, annotations: Mapping[str, str], container_concurrency: int) -> "ScalingSpec":
        """From a revision template's annotations and containerConcurrency; ScalingError names what is wrong."""
        def whole(names: tuple[str, ...]) -> int:
            for name in names:
                if name in annotations:
                    text = annotations[name]
                    if not re.fullmatch(r"\d{1,6}", str(text)):
                        raise ScalingError(name, f"annotation {name} must be a whole number >= 0, got {text!r}")
                    return int(text)
            return 0

        min_scale, max_scale = whole(MIN_SCALE), whole(MAX_SCALE)
        if max_scale and min_scale > max_scale:
            raise ScalingError(MIN_SCALE[0], f"minScale {min_scale} is above maxScale {max_scale}")
        window = STABLE_WINDOW_S
        if WINDOW in annotations:
            try:
                window = duration_s(annotations[WINDOW])
            except ValueError as exc:
                raise ScalingError(WINDOW, f"annotation {WINDOW}: {exc}") from None
            if not MIN_WINDOW_S <= window <= MAX_WINDOW_S:
                raise ScalingError(WINDOW, f"annotation {WINDOW} must be from 6s to 1h, got {annotations[WINDOW]!r}")
        per_instance = float(container_concurrency) if container_concurrency > 0 else DEFAULT_TARGET
        if TARGET in annotations:
            try:
                asked = float(annotations[TARGET])
            except ValueError:
                asked = -1.0
            if not asked >= 0.01:
                raise ScalingError(TARGET, f"annotation {TARGET} must be a number >= 0.01, got {annotations[TARGET]!r}")
            per_instance = min(per_instance, asked)
        return cls(per_instance * TARGET_UTILIZATION, min_scale, max_scale, window)


@dataclass(frozen=True)
class Decision:
    """One tick's outcome and the figures it was made from (the control plane's log says its reason)."""

    desired: int
    stable_concurrency: float
    panic_concurrency: float
    panicking: bool
    reason: str


class Autoscaler:
    """One revision's autoscaler: observations in, a desired instance count out."""

    def __init__(self, spec: ScalingSpec) -> None:
        self.spec = spec
        self._buckets: deque[list[float]] = deque()  # [second, sum of observations, count]
        self._panic_since: float | None = None
        self._panic_until: float | None = None  # panic ends after this (a stable window after its condition)
        self._max_panic = 0
        self._idle_since: float | None = None  # when the stable window first held no request
        self._first_seen: float | None = None  # the first observation: a window is whole only after a window

    def observe(self, at: float, concurrency: float) -> None:
        """Requests in flight or queued for the revision at time `at` (sampled several times a second)."""
        if self._first_seen is None:
            self._first_seen = at
        second = math.floor(at / BUCKET_S) * BUCKET_S
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += concurrency
            self._buckets[-1][2] += 1
        else:
            self._buckets.append([second, concurrency, 1])
        while self._buckets and self._buckets[0][0] < at - self.spec.stable_window_s - BUCKET_S:
            self._buckets.popleft()

    def average(self, at: float, window_s: float) -> float:
        """The mean of the per-second averages within the last `window_s` (Knative's window average)."""
        values = [total / count for second, total, count in self._buckets if second > at - window_s - BUCKET_S / 2]
        return sum(values) / len(values) if values else 0.0

    def wants_activation(self, ready: int) -> bool:
        """Demand at zero: the activator asks for an instance at once rather than wait for the next tick."""
        return ready == 0 and bool(self._buckets) and self._buckets[-1][1] > 0

    def decide(self, at: float, ready: int, reachable: bool = True, ever_ready: bool = True,
               current: int | None = None) -> Decision:
        """The instance count to run now, given `ready` instances that serve and `current` asked for (ready or
        starting; `ready` when not given)."""
        current = ready if current is None else current
        spec = self.spec
        stable = self.average(at, spec.stable_window_s)
        panic = self.average(at, spec.panic_window_s)
        pods = max(1, ready)
        max_up = math.ceil(MAX_SCALE_UP_RATE * pods)
        max_down = math.floor(pods / MAX_SCALE_DOWN_RATE) if reachable else 0
        wanted_stable = math.ceil(stable / spec.target)
        wanted_panic = math.ceil(panic / spec.target)
        desired_stable = int(min(max(wanted_stable, max_down), max_up))
        desired_panic = int(min(max(wanted_panic, max_down), max_up))
        over = wanted_panic / pods >= PANIC_THRESHOLD
        if over:
            self._panic_since = self._panic_since or at
            self._panic_until = at + spec.stable_window_s
        elif self._panic_since is not None and at > (self._panic_until or at):
            self._panic_since = self._panic_until = None
            self._max_panic = 0
        desired, reason = desired_stable, f"stable: {stable:.2f} in flight / target {spec.target:g}"
        if self._panic_since is not None:
            self._max_panic = max(self._max_panic, desired_panic)
            desired = self._max_panic
            reason = f"panic: {panic:.2f} in flight over {spec.panic_window_s:g} s / target {spec.target:g}"
        whole_window = self._first_seen is not None and at - self._first_seen >= spec.stable_window_s
        if desired == 0 and not whole_window and current > 0:
            desired, reason = 1, "no request yet, but not yet a whole stable window observed"
        elif desired == 0:  # a whole stable window without a request
            self._idle_since = self._idle_since if self._idle_since is not None else at
            if at - self._idle_since < SCALE_TO_ZERO_GRACE_S and current > 0:
                desired, reason = 1, "idle for a stable window: to zero after the grace period"
            else:
                reason = "idle: scaled to zero"
        else:
            self._idle_since = None
        if not ever_ready:
            desired, reason = max(desired, INITIAL_SCALE), "initial scale"
        if reachable and desired < spec.min_scale:
            desired, reason = spec.min_scale, f"minScale {spec.min_scale}"
        if spec.max_scale and desired > spec.max_scale:
            desired, reason = spec.max_scale, f"maxScale {spec.max_scale}"
        return Decision(desired, stable, panic, self._panic_since is not None, reason)
