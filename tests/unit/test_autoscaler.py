"""The autoscaler's decisions against the KPA's formulas, on load traces replayed at 10 samples a second.

Each expected count is worked out here from the formulas (Knative Serving's autoscaler.go): desired =
ceil(average concurrency / (containerConcurrency x 0.7)), panic at 2x the ready instances, no scale-down while
panicking, at most halving per tick, zero only after a whole idle stable window plus the 30 s grace period."""

from __future__ import annotations

import math

import pytest

from iris_tools.cloudrun.autoscaler import (
    SCALE_TO_ZERO_GRACE_S,
    TICK_S,
    Autoscaler,
    ScalingError,
    ScalingSpec,
    duration_s,
)

SAMPLE_S = 0.1


def replay(scaler: Autoscaler, trace: list[tuple[float, float]], ready: int | None = None, start: float = 0.0,
           reachable: bool = True) -> list[tuple[float, int, bool]]:
    """Feed `trace` ([(seconds, concurrency)...], each segment held for its seconds) at 10 samples a second, deciding
    every TICK_S with the instances it asked for at the last tick all ready (or `ready`, fixed). Returns
    (time, desired, panicking) per tick."""
    decisions, now, current = [], start, 1
    next_tick = start + TICK_S
    for seconds, concurrency in trace:
        end = now + seconds
        while now < end - 1e-9:
            now = round(now + SAMPLE_S, 6)
            scaler.observe(now, concurrency)
            if now >= next_tick - 1e-9:
                decision = scaler.decide(now, current if ready is None else ready, reachable)
                decisions.append((now, decision.desired, decision.panicking))
                current = decision.desired
                next_tick += TICK_S
    return decisions


def test_steady_load_asks_for_the_stable_formula_and_holds_it() -> None:
    spec = ScalingSpec.of_template({}, 10)  # target 7 per instance
    decisions = replay(Autoscaler(spec), [(30, 20.0)])
    assert all(desired == math.ceil(20 / 7) for _, desired, _ in decisions)  # 3, from the first tick
    assert decisions[0][2]  # 3 wanted for 1 ready is over 2x: a panic, from which it does not come down
    assert spec.target == pytest.approx(7.0)


def test_a_burst_panics_within_the_panic_window_and_never_scales_down_while_panicking() -> None:
    spec = ScalingSpec.of_template({}, 1)  # target 0.7: 8 steady clients want ceil(8 / 0.7) = 12
    scaler = Autoscaler(spec)
    decisions = replay(scaler, [(4, 8.0)], ready=1)
    at, desired, panicking = decisions[0]
    assert at <= spec.panic_window_s and panicking and desired == 12
    # The load halves: the panic window says ceil(4 / 0.7) = 6, but panic keeps the most it asked for ...
    later = replay(scaler, [(10, 4.0)], ready=12, start=4.0)
    assert all(desired == 12 for _, desired, _ in later)
    # ... until a whole stable window after its condition last held (the condition holds at 1 ready instance
    # only; with 12 ready it is over at the first tick of the lower load).
    rest = replay(scaler, [(70, 4.0)], ready=12, start=14.0)
    ended = next(at for at, _, panicking in rest if not panicking)
    assert 4.0 + spec.stable_window_s <= ended <= 4.0 + spec.stable_window_s + TICK_S
    assert rest[-1][1] == 6  # stable: ceil(4 / 0.7)


def test_scale_down_is_at_most_halving_a_tick() -> None:
    spec = ScalingSpec.of_template({"autoscaling.knative.dev/window": "6s"}, 1)
    decisions = replay(Autoscaler(spec), [(20, 0.5)], ready=None)
    assert decisions[0][1] == 1
    scaler = Autoscaler(spec)
    scaler.observe(0.1, 0.5)
    assert scaler.decide(0.2, ready=8).desired == 4  # wants 1: floor(8 / 2) at most
    assert scaler.decide(2.2, ready=4).desired == 2
    assert scaler.decide(4.2, ready=2).desired == 1


def test_scale_to_zero_only_after_a_whole_idle_window_and_the_grace_period() -> None:
    spec = ScalingSpec.of_template({"autoscaling.knative.dev/window": "6s"}, 80)
    scaler = Autoscaler(spec)
    decisions = replay(scaler, [(10, 1.0), (60, 0.0)])
    last_request = 10.0
    zero = next(at for at, desired, _ in decisions if desired == 0)
    assert last_request + spec.stable_window_s + SCALE_TO_ZERO_GRACE_S <= zero
    assert zero <= last_request + spec.stable_window_s + SCALE_TO_ZERO_GRACE_S + 2 * TICK_S  # about 40 s
    assert all(desired == 1 for at, desired, _ in decisions if at < zero)


def test_demand_at_zero_asks_for_one_instance_at_once() -> None:
    scaler = Autoscaler(ScalingSpec())
    assert not scaler.wants_activation(ready=0)
    scaler.observe(100.0, 1.0)
    assert scaler.wants_activation(ready=0) and not scaler.wants_activation(ready=1)
    assert scaler.decide(100.05, ready=0).desired == 1


def test_bounds_min_only_while_reachable_max_always_and_initial_scale() -> None:
    spec = ScalingSpec.of_template({"autoscaling.knative.dev/minScale": "2",
                                    "autoscaling.knative.dev/maxScale": "3"}, 1)
    scaler = Autoscaler(spec)
    assert scaler.decide(0.0, ready=0).desired == 2  # no traffic, reachable: kept warm
    assert Autoscaler(spec).decide(0.0, ready=0, reachable=False).desired == 0
    busy = Autoscaler(spec)
    replay(busy, [(4, 50.0)], ready=1)
    assert busy.decide(4.1, ready=3).desired == 3  # wants 72: capped
    assert Autoscaler(ScalingSpec()).decide(0.0, ready=0, ever_ready=False).desired == 1


@pytest.mark.parametrize("annotations, field", [
    ({"autoscaling.knative.dev/window": "5s"}, "autoscaling.knative.dev/window"),
    ({"autoscaling.knative.dev/window": "2h"}, "autoscaling.knative.dev/window"),
    ({"autoscaling.knative.dev/window": "soon"}, "autoscaling.knative.dev/window"),
    ({"autoscaling.knative.dev/minScale": "-1"}, "autoscaling.knative.dev/minScale"),
    ({"autoscaling.knative.dev/maxScale": "two"}, "autoscaling.knative.dev/maxScale"),
    ({"autoscaling.knative.dev/minScale": "3", "autoscaling.knative.dev/maxScale": "2"},
     "autoscaling.knative.dev/minScale"),
    ({"autoscaling.knative.dev/target": "0"}, "autoscaling.knative.dev/target"),
])
def test_annotations_the_kpa_refuses_are_refused_naming_them(annotations: dict[str, str], field: str) -> None:
    with pytest.raises(ScalingError) as refused:
        ScalingSpec.of_template(annotations, 80)
    assert refused.value.field == field


def test_annotations_as_knative_reads_them() -> None:
    spec = ScalingSpec.of_template({"autoscaling.knative.dev/window": "1m30s", "autoscaling.knative.dev/target": "10",
                                    "autoscaling.knative.dev/max-scale": "4"}, 80)
    assert (spec.stable_window_s, spec.panic_window_s, spec.target, spec.max_scale) == (90.0, 9.0, 7.0, 4)
    assert ScalingSpec.of_template({}, 0).target == pytest.approx(70.0)  # unlimited: the default target 100
    assert duration_s("6s") == 6 and duration_s("1h") == 3600 and duration_s("1500ms") == 1.5


def test_a_new_revision_with_no_request_keeps_its_instance_for_a_whole_window_and_the_grace_period() -> None:
    """Even while its one instance is still starting (ready 0, asked for 1). Broken on purpose (the grace period
    only for ready instances, as at first): a revision whose instance was starting went to zero at its first tick."""
    spec = ScalingSpec.of_template({"autoscaling.knative.dev/window": "6s"}, 80)
    scaler = Autoscaler(spec)
    at, desired = 0.0, 1
    while desired:
        at = round(at + SAMPLE_S, 6)
        scaler.observe(at, 0.0)
        if round(at * 10) % round(TICK_S * 10) == 0:
            desired = scaler.decide(at, ready=0 if at < 3 else 1, current=desired).desired
    assert spec.stable_window_s + SCALE_TO_ZERO_GRACE_S <= at <= spec.stable_window_s + SCALE_TO_ZERO_GRACE_S + 2 * TICK_S
