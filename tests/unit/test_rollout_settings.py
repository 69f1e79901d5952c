"""The rollout's settings: defaults by target, every override, and a clear refusal of bad values."""

from __future__ import annotations

import pytest

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.settings import RolloutSettings as Settings


def test_the_cloud_run_defaults_wait_out_cloud_monitorings_delay_and_the_local_ones_are_short() -> None:
    cloud, local = Settings.for_target("cloudrun", {}), Settings.for_target("local", {})
    assert cloud.delay_seconds == 180 and cloud.step_seconds == 600 and cloud.thresholds.min_requests == 100
    assert local.delay_seconds == 0 and local.step_seconds == 10 and local.thresholds.min_requests == 50
    for settings in (cloud, local):
        assert settings.plan.to_json() == [5, 25, 50, 100] and settings.thresholds.confidence == 0.99
        assert settings.warmup_requests == 20 and settings.min_agreement is None and not settings.public
        assert settings.max_hold_seconds == 3 * settings.step_seconds


def test_every_threshold_and_timing_comes_from_the_environment() -> None:
    settings = Settings.for_target("local", {
        "STEPS": "10, 100", "STEP_SECONDS": "4", "MIN_REQUESTS": "7", "MAX_ERROR_RATE": "0.05",
        "MAX_LATENCY_RATIO": "3", "MIN_LATENCY_DELTA_MS": "2", "CONFIDENCE": "0.999", "WARMUP_REQUESTS": "0",
        "MAX_HOLD_SECONDS": "9", "MIN_AGREEMENT": "0.9", "PUBLIC": "1", "SERVICE": "flowers"})
    assert settings.plan.to_json() == [10, 100] and settings.step_seconds == 4 and settings.max_hold_seconds == 9
    t = settings.thresholds
    assert (t.min_requests, t.max_error_rate, t.max_latency_ratio, t.min_latency_delta_ms, t.confidence) == \
        (7, 0.05, 3, 2, 0.999)
    assert settings.warmup_requests == 0 and settings.min_agreement == 0.9 and settings.public
    assert settings.service == "flowers"


@pytest.mark.parametrize("name, value, message", [
    ("STEPS", "50 25 100", "increasing percentages"),
    ("STEPS", "5 50", "end at 100"),
    ("STEPS", "five", "whole percentages"),
    ("STEPS", "pause 5 100", "with a pause"),
    ("STEPS", "5 pause pause 100", "with a pause"),
    ("STEPS", "5 100 pause", "end at 100"),
    ("STEP_SECONDS", "soon", "is not a number"),
    ("WARMUP_REQUESTS", "-1", "must not be negative"),
    ("CONFIDENCE", "1", "a fraction from 0.5 to below 1"),
    ("CONFIDENCE", "0.2", "a fraction from 0.5 to below 1"),
    ("MIN_AGREEMENT", "1.5", "a fraction from 0 to 1"),
])
def test_a_bad_setting_is_refused_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(RolloutError, match=message) as caught:
        Settings.for_target("local", {name: value})
    assert name in str(caught.value)


def test_a_pause_step_keeps_the_share_of_the_step_before() -> None:
    plan = Settings.for_target("local", {"STEPS": "5 25 pause 50 100"}).plan
    assert plan.to_json() == [5, 25, "pause", 50, 100]
    assert [plan.percent_at(i) for i in range(len(plan))] == [5, 25, 25, 50, 100]
