"""The rollout's decision, fed figures at and around each threshold, and no traffic at all."""

from __future__ import annotations

import pytest

from iris_tools.rollout.gate import Figures, Thresholds, judge

T = Thresholds(max_error_rate=0.01, max_latency_ratio=2.0, min_latency_delta_ms=5.0, min_requests=50)
STABLE = Figures(requests=1000, errors=0, p50_ms=1.0, p99_ms=10.0)


def test_no_traffic_at_all_holds_and_is_never_healthy() -> None:
    verdict = judge(Figures(), STABLE, T)
    assert verdict.decision == "hold" and "0 candidate requests, fewer than 50" in verdict.reasons[0]
    assert judge(Figures(), Figures(), T).decision == "hold"


@pytest.mark.parametrize("requests, decision", [(49, "hold"), (50, "promote"), (51, "promote")])
def test_the_request_count_at_and_around_the_minimum(requests: int, decision: str) -> None:
    assert judge(Figures(requests, 0, 1.0, 10.0), STABLE, T).decision == decision


@pytest.mark.parametrize("errors, decision", [(9, "promote"), (10, "promote"), (11, "rollback")])
def test_the_5xx_rate_at_and_around_its_threshold(errors: int, decision: str) -> None:
    verdict = judge(Figures(1000, errors, 1.0, 10.0), STABLE, T)  # 0.9%, 1.0%, 1.1%
    assert verdict.decision == decision
    if decision == "rollback":
        assert "5xx rate 1.10% is above 1%" in verdict.reasons


def test_errors_breach_even_before_enough_requests_arrive() -> None:
    verdict = judge(Figures(10, 3, 1.0, 10.0), STABLE, T)
    assert verdict.decision == "rollback" and "5xx rate 30.00% is above 1%" in verdict.reasons[0]


@pytest.mark.parametrize("p99, decision", [(19.9, "promote"), (20.0, "promote"), (20.1, "rollback")])
def test_latency_at_and_around_twice_the_stable_p99(p99: float, decision: str) -> None:
    assert judge(Figures(500, 0, 1.0, p99), STABLE, T).decision == decision


@pytest.mark.parametrize("stable_p99, candidate_p99, decision", [(1.0, 6.0, "promote"), (1.0, 6.1, "rollback"),
                                                                 (0.5, 5.5, "promote"), (3.0, 8.0, "promote")])
def test_a_small_absolute_difference_is_noise_whatever_its_ratio(stable_p99: float, candidate_p99: float,
                                                                 decision: str) -> None:
    # 1 ms -> 6 ms is 6x but only +5 ms: noise at whole-millisecond resolution; +5.1 ms is a breach.
    stable = Figures(1000, 0, 0.5, stable_p99)
    assert judge(Figures(500, 0, 1.0, candidate_p99), stable, T).decision == decision


def test_a_healthy_candidate_reading_half_to_once_the_stable_p99_passes() -> None:
    for ratio in (0.5, 0.75, 1.0):
        assert judge(Figures(500, 0, 1.0, 10.0 * ratio), STABLE, T).decision == "promote"


def test_latency_is_not_judged_without_stable_figures() -> None:
    assert judge(Figures(500, 0, 1.0, 900.0), Figures(), T).decision == "promote"


def test_a_candidate_that_is_not_ready_is_rolled_back_whatever_its_figures() -> None:
    verdict = judge(Figures(500, 0, 1.0, 10.0), STABLE, T, candidate_ready=False)
    assert verdict.decision == "rollback" and verdict.reasons == ["the candidate revision is not ready"]


def test_the_verdict_line_shows_figures_thresholds_and_reasons() -> None:
    verdict = judge(Figures(200, 4, 1.0, 30.0), STABLE, T)
    line = verdict.line()
    assert line.startswith("ROLLBACK: candidate 200 req, 5xx 2.00% (max 1%), p99 30 ms vs stable 10 ms")
    assert "5xx rate 2.00% is above 1%" in line and "p99 30 ms is above 20 ms (stable p99 10 ms)" in line
    assert verdict.as_json()["decision"] == "rollback" and verdict.as_json()["thresholds"]["min_requests"] == 50


def test_the_wilson_interval_and_the_class_shift_test() -> None:
    from iris_tools.rollout.shadow import class_shift, wilson

    low, high = wilson(88, 100)
    assert low == pytest.approx(0.8019, abs=1e-4) and high == pytest.approx(0.9300, abs=1e-4)  # 88 of 100
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == pytest.approx(1.0)
    same = class_shift({"a": 50, "b": 50}, {"a": 50, "b": 50})
    assert same["p_value"] == 1.0 and not same["shifted"]
    shifted = class_shift({"a": 90, "b": 10}, {"a": 10, "b": 90})
    assert shifted["shifted"] and shifted["p_value"] < 1e-6
