"""The rollout's decision, fed figures at and around each threshold, and no traffic at all."""

from __future__ import annotations

import math

import pytest

from iris_tools.google.monitoring import Figures
from iris_tools.rollout.gate import Thresholds, chance_of_at_least, judge
from iris_tools.quality.outcomes import wilson
from iris_tools.rollout.shadow import class_shift

T = Thresholds(max_error_rate=0.01, max_latency_ratio=2.0, min_latency_delta_ms=5.0, min_requests=50,
               confidence=0.99)
STABLE = Figures(requests=1000, errors=0, p50_ms=1.0, p99_ms=10.0, latency=((0.0, 990), (7.5, 10)))


def candidate(requests: int, errors: int = 0, p99: float = 10.0, slow: int = 0, slow_from: float = 20.0) -> Figures:
    """`requests`, of which `slow` fell in a bucket starting at `slow_from` ms, the rest under 1 ms."""
    return Figures(requests, errors, 1.0, p99, ((0.0, requests - slow), (slow_from, slow)))


def test_no_traffic_at_all_holds_and_is_never_healthy() -> None:
    verdict = judge(Figures(), STABLE, T)
    assert verdict.decision == "hold" and "0 candidate requests, fewer than 50" in verdict.reasons[0]
    assert judge(Figures(), Figures(), T).decision == "hold"


@pytest.mark.parametrize("requests, decision", [(49, "hold"), (50, "promote"), (51, "promote")])
def test_the_request_count_at_and_around_the_minimum(requests: int, decision: str) -> None:
    assert judge(candidate(requests), STABLE, T).decision == decision


@pytest.mark.parametrize("n, k", [(1000, 19), (500, 12), (50, 4), (20, 3)])
def test_the_binomial_tail_at_and_around_the_confidence(n: int, k: int) -> None:
    # The smallest count of n that a 1% source shows less than 1% of the time, checked against the sum itself.
    def exact(count: int) -> float:
        return sum(math.comb(n, i) * 0.01**i * 0.99 ** (n - i) for i in range(count, n + 1))

    for count in (0, 1, k - 1, k, k + 1, n):
        assert chance_of_at_least(count, n, 0.01) == pytest.approx(exact(count), rel=1e-9, abs=1e-300)
    assert chance_of_at_least(k - 1, n, 0.01) >= 0.01 > chance_of_at_least(k, n, 0.01)
    assert chance_of_at_least(1, n, 0.0) == 0.0 and chance_of_at_least(0, n, 0.0) == 1.0
    assert chance_of_at_least(5000, 100_000, 0.01) == 0.0  # far out in the tail: no overflow, no error


@pytest.mark.parametrize("errors, decision", [(10, "promote"), (18, "promote"), (19, "hold"), (22, "hold"),
                                              (23, "rollback")])
def test_the_5xx_count_at_and_around_what_the_sequential_test_allows(errors: int, decision: str) -> None:
    # Evidence 1.119 k - 20.4 for k of 1000 (ln 3 per 5xx, ln(0.97/0.99) per other answer); a breach at ln 100,
    # a promotion at 0 or below (k <= 18), and between the two the step holds for more requests.
    verdict = judge(candidate(1000, errors), STABLE, T)  # 1.0%, 1.8%, 1.9%, 2.2%, 2.3% of 1000
    assert verdict.decision == decision
    if errors == 18:
        assert verdict.reasons[0] == "healthy" and "within chance: 18 of 1000 answers 5xx: evidence -0.3" \
            in verdict.reasons[1]
    if errors == 22:
        assert verdict.reasons == ["5xx rate 2.20% above 1%, not yet decided: 22 of 1000 answers 5xx: evidence 4.2 "
                                   "of the 4.6 that calls a breach (sequential test, a 1% rate against 3x it); "
                                   "holding for more requests"]
    if decision == "rollback":
        assert verdict.reasons[0].startswith("5xx rate 2.30% is above 1%: 23 of 1000 answers 5xx: evidence 5.3 of "
                                             "the 4.6 that calls a breach")


def test_a_candidate_failing_one_in_five_is_held_not_promoted_for_want_of_proof() -> None:
    """The CI run that asked for this: with MIN_REQUESTS 20, a candidate failing 4 of its 20 answers (evidence 4.1
    of the 5.7 a three-step rollout needs) was promoted to 50% at the end of its step. Broken on purpose (promote
    whatever the evidence short of a breach): promote."""
    three_steps = Thresholds(min_requests=20, confidence=0.99, steps=3)
    verdict = judge(candidate(20, 4), STABLE, three_steps)
    assert verdict.decision == "hold" and "not yet decided: 4 of 20 answers 5xx: evidence 4.1 of the 5.7" \
        in verdict.reasons[0]
    assert judge(candidate(30, 6), STABLE, three_steps).decision == "rollback"  # more answers decide it
    assert judge(candidate(20, 0), STABLE, three_steps).decision == "promote"


def test_errors_breach_even_before_enough_requests_arrive() -> None:
    verdict = judge(candidate(10, 5), STABLE, T)
    assert verdict.decision == "rollback" and "5xx rate 50.00% is above 1%" in verdict.reasons[0]
    assert judge(candidate(10, 4), STABLE, T).decision == "hold"  # 4 in 10: evidence 4.3, not yet 4.6
    assert judge(candidate(5, 5), STABLE, T).decision == "rollback"  # the first five all failing


@pytest.mark.parametrize("slow, decision", [(5, "promote"), (9, "promote"), (10, "hold"), (13, "hold"),
                                            (14, "rollback")])
def test_requests_slower_than_twice_the_stable_p99_at_and_around_what_a_p99_allows(slow: int, decision: str) -> None:
    # 500 requests, `slow` of them above 20 ms (2x the stable 10 ms): 1% of 500 is 5; 10 leans to a breach, 14 is one.
    verdict = judge(candidate(500, p99=30.0, slow=slow), STABLE, T)
    assert verdict.decision == decision
    if decision == "rollback":
        assert verdict.reasons[0].startswith(f"p99 30 ms is above 20 ms (stable p99 10 ms): {slow} of 500 requests "
                                             f"slower than 20 ms")


def test_only_requests_certainly_beyond_the_limit_count() -> None:
    # A bucket that starts below the limit may hold requests under it: they are not counted as slow.
    assert judge(candidate(500, p99=30.0, slow=100, slow_from=15.0), STABLE, T).decision == "promote"
    assert judge(candidate(500, p99=30.0, slow=100, slow_from=20.0), STABLE, T).decision == "rollback"


def test_one_cold_request_is_noise_and_every_request_late_is_a_fault() -> None:
    # The CI run that asked for this gate: stable p99 7.5 ms over 892 requests, a healthy candidate's one cold
    # request in 50 at 25-30 ms put its p99 at 30 ms. Every request 30 ms late is a fault from 20 requests on.
    stable = Figures(892, 0, 2.0, 7.5, ((0.0, 880), (5.0, 12)))
    cold = Figures(50, 0, 1.0, 30.0, ((0.0, 49), (25.0, 1)))
    verdict = judge(cold, stable, T)  # evidence 0.1: leaning to a breach, far from one; held for more requests
    assert verdict.decision == "hold" and "1 of 50 requests slower than 15 ms: evidence 0.1" in verdict.reasons[0]
    cold = Figures(60, 0, 1.0, 30.0, ((0.0, 59), (25.0, 1)))
    verdict = judge(cold, stable, T)
    assert verdict.decision == "promote" and verdict.reasons[0] == "healthy"
    assert "p99 30 ms above 15 ms within chance: 1 of 60 requests slower than 15 ms: evidence -0.1" in verdict.reasons[1]
    late = Figures(20, 0, 50.0, 50.0, ((30.0, 20),))
    assert judge(late, stable, T).decision == "rollback"


@pytest.mark.parametrize("stable_p99, slow_from, decision", [(1.0, 5.0, "promote"), (1.0, 6.0, "rollback"),
                                                             (0.5, 5.5, "rollback"), (3.0, 7.5, "promote")])
def test_a_small_absolute_difference_is_noise_whatever_its_ratio(stable_p99: float, slow_from: float,
                                                                 decision: str) -> None:
    # Stable 1 ms: the limit is 6 ms (+5 ms beats 2x). Every candidate request in a bucket from 5 ms may be
    # under it; from 6 ms on, all are beyond it. Stable 3 ms: the limit is 8 ms.
    stable = Figures(1000, 0, 0.5, stable_p99, ((0.0, 1000),))
    assert judge(candidate(500, p99=10.0, slow=500, slow_from=slow_from), stable, T).decision == decision


def test_a_healthy_candidate_reading_half_to_once_the_stable_p99_passes() -> None:
    for ratio in (0.5, 0.75, 1.0):
        assert judge(candidate(500, p99=10.0 * ratio), STABLE, T).decision == "promote"


@pytest.mark.parametrize("stable_requests", [0, 1, 49])
def test_a_stable_p99_from_too_few_requests_is_no_baseline_so_the_step_holds(stable_requests: int) -> None:
    """Broken on purpose (the latency check skipped without a baseline, as before): a candidate at 900 ms was
    promoted."""
    few = Figures(stable_requests, 0, 1.0, 10.0 if stable_requests else None, ((0.0, stable_requests),))
    verdict = judge(candidate(500, p99=900.0, slow=500, slow_from=750.0), few, T)
    assert verdict.decision == "hold" and "no latency baseline" in verdict.reasons[0], verdict.reasons


def test_a_stable_revision_breaching_itself_holds_the_step_and_blames_no_one() -> None:
    """A downstream outage: the stable revision answers 5% 5xx. A candidate as bad is not rolled back for it,
    and a healthy one is not promoted past it. Broken on purpose (no baseline check): rolled back."""
    outage = Figures(2000, 100, 1.0, 10.0, ((0.0, 1980), (7.5, 20)))
    for errors in (0, 25):
        verdict = judge(candidate(500, errors=errors), outage, T)
        assert verdict.decision == "hold" and "stable revision itself breaches" in verdict.reasons[0]
    within_chance = Figures(1000, 12, 1.0, 10.0, ((0.0, 990), (7.5, 10)))  # 1.2%: not a significant breach
    assert judge(candidate(500), within_chance, T).decision == "promote"


def test_a_candidate_that_is_not_ready_is_rolled_back_whatever_its_figures() -> None:
    verdict = judge(candidate(500), STABLE, T, candidate_ready=False)
    assert verdict.decision == "rollback" and verdict.reasons == ["the candidate revision is not ready"]


def test_the_verdict_line_shows_figures_thresholds_and_reasons() -> None:
    verdict = judge(candidate(200, 8, p99=30.0, slow=20), STABLE, T)
    line = verdict.line()
    assert line.startswith("ROLLBACK: candidate 200 req, 5xx 4.00% (max 1%), p99 30 ms vs stable 10 ms")
    assert "(breach above 2x and +5 ms, at 99% confidence)" in line
    assert "5xx rate 4.00% is above 1%: 8 of 200 answers 5xx" in line
    assert "p99 30 ms is above 20 ms (stable p99 10 ms): 20 of 200 requests slower than 20 ms" in line
    assert verdict.as_json()["decision"] == "rollback" and verdict.as_json()["thresholds"]["min_requests"] == 50
    assert verdict.as_json()["candidate"]["latency"] == ((0.0, 180), (20.0, 20))


def test_the_wilson_interval_and_the_class_shift_test() -> None:
    low, high = wilson(88, 100)
    assert low == pytest.approx(0.8019, abs=1e-4) and high == pytest.approx(0.9300, abs=1e-4)  # 88 of 100
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == pytest.approx(1.0)
    same = class_shift({"a": {"a": 50, "b": 0}, "b": {"a": 0, "b": 50}})
    assert same["p_value"] == 1.0 and not same["shifted"]
    swapped = class_shift({"a": {"a": 40, "b": 10}, "b": {"a": 10, "b": 40}})  # as many each way: no shift
    assert swapped["p_value"] == pytest.approx(1.0) and not swapped["shifted"]
    shifted = class_shift({"a": {"a": 10, "b": 80}, "b": {"a": 0, "b": 10}})
    assert shifted["shifted"] and shifted["p_value"] < 1e-6


def test_the_class_shift_is_judged_on_paired_answers_not_two_independent_samples() -> None:
    """15 of 300 inputs move from setosa to versicolor and none back: the two mixes (100/100/100 against
    85/115/100) look alike to a two-sample chi-square (p = 0.32), but the pairs say every change went one
    way (McNemar on the 15: p = 0.0001). Broken on purpose (scipy's chi2_contingency on the two mixes, as
    before): p = 0.32, not shifted."""
    from scipy.stats import chi2_contingency

    confusion = {"setosa": {"setosa": 85, "versicolor": 15, "virginica": 0},
                 "versicolor": {"setosa": 0, "versicolor": 100, "virginica": 0},
                 "virginica": {"setosa": 0, "versicolor": 0, "virginica": 100}}
    two_sample = chi2_contingency([[100, 100, 100], [85, 115, 100]])[1]
    assert two_sample == pytest.approx(0.32, abs=0.01)
    paired = class_shift(confusion)
    assert paired["shifted"] and paired["p_value"] == pytest.approx(1.08e-4, rel=0.01) and paired["dof"] == 1
