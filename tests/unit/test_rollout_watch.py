"""One step's watch (Rollout._watch) against a Monitoring that answers as told: which stable figures the
candidate is judged against when the stable revision serves nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from iris_tools.google.monitoring import Figures
from iris_tools.quality.outcomes import RevisionOutcome
from iris_tools.rollout.records import Lock, Plan
from iris_tools.rollout.settings import RolloutSettings
from iris_tools.rollout.split import Split
from iris_tools.rollout.walk import Rollout

ROLLOUT_STARTED = 1_000.0


class StubService:
    def __init__(self) -> None:
        self.settings = RolloutSettings(step_seconds=0.2, poll_seconds=0.01, resolution_seconds=0.0,
                                        max_hold_seconds=1.0)

    def revision_ready(self, revision: str) -> bool:
        return True


class AnsweringMonitoring:
    """The candidate alone over the step's window; the stable revision over the rollout's (from its start)."""

    def __init__(self, candidate: Figures, stable_over_rollout: Figures) -> None:
        self.candidate, self.stable_over_rollout = candidate, stable_over_rollout
        self.windows: list[float] = []

    def figures(self, service: str | None, start: float, end: float) -> dict[str, Figures]:
        self.windows.append(start)
        if start == ROLLOUT_STARTED:
            return {"iris-stable": self.stable_over_rollout} if self.stable_over_rollout.requests else {}
        return {"iris-candidate": self.candidate}


def figures(requests: int, p99_ms: float, buckets: tuple[tuple[float, int], ...]) -> Figures:
    return Figures(requests=requests, errors=0, p50_ms=1.0, p99_ms=p99_ms, latency=buckets)


# The candidate carrying every user: 2% of its requests in the 10.5-20 ms bucket, its p99 there.
AT_FULL_LOAD = figures(1000, 20.0, ((1.0, 980), (10.5, 20)))
# The stable revision at 50% in the step before: p99 5 ms (a limit of 10.38 ms, under the candidate's 2%).
AT_HALF_LOAD = figures(300, 5.0, ((1.0, 300),))
# The stable revision over the whole rollout, mostly carrying every user: p99 20 ms (a limit of 40 ms).
OVER_THE_ROLLOUT = figures(3000, 20.0, ((1.0, 2960), (10.5, 40)))


def watch(monitoring: AnsweringMonitoring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    rollout = Rollout(StubService(), monitoring, tmp_path, emit=lambda event: None)
    monkeypatch.setattr(rollout, "_still_ours", lambda lock, expected: None)
    lock = Lock(id="r1", candidate="iris-candidate", stable="iris-stable", plan=Plan.parse("50 100"), step=1,
                started=ROLLOUT_STARTED)
    verdict, _ = rollout._watch(lock, 1, 100, time.time(), Split.between("iris-stable", "iris-candidate", 100),
                                AT_HALF_LOAD, RevisionOutcome("iris-stable"))
    return verdict


def test_at_100_percent_the_candidate_is_judged_against_the_stable_revision_over_the_rollout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """At 100% the candidate carries every user; the stable revision carried most of them over the rollout. Against
    those figures its p99 is within the limit and it is promoted. Broken on purpose (judged against the step
    before's stable figures, at half the load, as it was): rolled back for latency, as a busy CI machine saw."""
    monitoring = AnsweringMonitoring(AT_FULL_LOAD, OVER_THE_ROLLOUT)
    verdict = watch(monitoring, monkeypatch, tmp_path)
    assert verdict.decision == "promote", verdict.line()
    assert verdict.stable.requests == OVER_THE_ROLLOUT.requests
    assert ROLLOUT_STARTED in monitoring.windows


def test_without_stable_figures_over_the_rollout_the_step_before_s_are_the_reference(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Monitoring has nothing of the stable revision over the rollout: the step before's figures judge, and the
    candidate's 2% beyond their limit keeps it from promotion (held, then rolled back)."""
    verdict = watch(AnsweringMonitoring(AT_FULL_LOAD, Figures()), monkeypatch, tmp_path)
    assert verdict.decision == "rollback" and verdict.stable.requests == AT_HALF_LOAD.requests, verdict.line()
    assert "p99" in verdict.reasons[0]
