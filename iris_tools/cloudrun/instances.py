"""A revision's instances as the control plane keeps them: each a process (or container) on a port of its own.

`Pool` is the bookkeeping of one revision (its instances, its autoscaler, its crash back-off); the supervisor
starts and stops what it says. Times are time.monotonic().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iris_tools.cloudrun.autoscaler import Autoscaler, ScalingSpec, ScalingError
from iris_tools.local.servers import Server

ACTIVE_S = 1.0  # an instance that had a request in flight within this long is "active"; otherwise "idle"
RESTART_BASE_S = 0.5  # the wait after a second crash in a row; it doubles with each further one
RESTART_CAP_S = 8.0
STABLE_S = 10.0  # an instance that ran this long before it died is replaced at once


@dataclass(eq=False)
class Instance:
    revision: str
    port: int
    started_at: float
    server: Server | None = None  # None until its process is started
    ready_at: float | None = None
    last_active_at: float = 0.0
    requests_seen: int = 0  # Envoy's rq_total for this endpoint at the last look

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def startup_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.started_at

    def state(self, now: float) -> str:
        """Cloud Run's instance_count states: "active" (a request within ACTIVE_S) or "idle"."""
        return "active" if now - self.last_active_at <= ACTIVE_S else "idle"


@dataclass
class Pool:
    """One revision's instances and what decides their number."""

    autoscaler: Autoscaler
    desired: int
    instances: dict[int, Instance] = field(default_factory=dict)  # port -> instance (starting or ready)
    failures: int = 0  # crashes in a row soon after a start, or failed starts of a revision that served
    next_start_at: float = 0.0
    crashed: bool = False  # the last instance lost was a crash (not a scale-down): the revision is restarting
    refused_seen: int = 0  # Envoy's upstream_cx_connect_fail at the last look (a poke from a held request)
    sent_seen: int = 0  # Envoy's upstream_rq_total at the last look

    @classmethod
    def for_revision(cls, revision: dict[str, Any], desired: int) -> "Pool":
        return cls(Autoscaler(scaling_spec(revision)), desired)

    def ready(self) -> list[Instance]:
        return [instance for instance in self.instances.values() if instance.ready]

    def starting(self) -> list[Instance]:
        return [instance for instance in self.instances.values() if not instance.ready]

    def crashed_now(self, instance: Instance, now: float) -> None:
        """Back-off bookkeeping for an instance that died: a crash soon after a start counts toward back-off."""
        quick = now - instance.started_at < STABLE_S
        self.failures = self.failures + 1 if quick else 0
        self.next_start_at = now + self.delay()
        self.crashed = True

    def start_failed(self, now: float) -> float:
        self.failures += 1
        self.next_start_at = now + self.delay()
        return self.delay()

    def delay(self) -> float:
        return 0.0 if self.failures == 0 else min(RESTART_CAP_S, RESTART_BASE_S * 2 ** (self.failures - 1))

    def counts(self, now: float) -> dict[str, int]:
        """Instances by Cloud Run's state label (starting instances count as idle, as they serve nothing yet)."""
        states = [instance.state(now) if instance.ready else "idle" for instance in self.instances.values()]
        return {"active": states.count("active"), "idle": states.count("idle")}


def scaling_spec(revision: dict[str, Any]) -> ScalingSpec:
    """The stored revision's scaling spec (validated when it was stored: a bad one here is a stale state file)."""
    template = revision["object"]
    concurrency = template["spec"].get("containerConcurrency")
    try:
        return ScalingSpec.of_template(template["metadata"].get("annotations") or {},
                                       80 if concurrency is None else int(concurrency))
    except ScalingError:
        return ScalingSpec()
