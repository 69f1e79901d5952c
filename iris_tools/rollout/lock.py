"""Taking a service for one rollout: the Lock written with a compare-and-swap, and whether a recorded one still runs."""

from __future__ import annotations

import os
import socket
import time
import uuid
from iris_tools.local.processes import start_time
from iris_tools.rollout.cloud_run import CloudRunService, Conflict
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.records import Annotations, Lock, Plan


def held(annotations: Annotations, target: CloudRunService) -> tuple[Lock | None, bool]:
    """(the recorded rollout or None, whether it is still running)."""
    lock = annotations.lock
    return (lock, running(lock, target)) if lock else (None, False)


def running(lock: Lock, target: CloudRunService) -> bool:
    """Whether the rollout that wrote `lock` still runs. A detached one (make rollout DETACH=1), seen from anywhere
    but its own execution: whether that execution still runs, as the jobs API says (between a task that died and
    its retry, the execution runs and the rollout is not free to take); when the API cannot say, and for a rollout in
    a terminal, the lock's own test (its process on this host, or how recently it moved)."""
    if lock.execution and lock.execution != os.environ.get("CLOUD_RUN_EXECUTION"):
        found = target.execution_running(lock.execution)
        if found is not None:
            return found
    return lock.is_live(target.settings.stale_after_s)


def refuse_unreadable(annotations: Annotations) -> None:
    """A lock that does not parse is never taken over silently: say so, and what undoes it."""
    if annotations.lock_error is not None:
        raise RolloutError(f"{annotations.lock_error}; the interrupted rollout's record does not fit: nothing was "
                           f"changed; `make rollback` undoes it (100% back on the revision before)")


def new_lock(candidate: str, stable: str, plan: Plan, resume: Lock | None, image: str | None,
             digest: str | None) -> Lock:
    """This process's lock: a resumed rollout keeps its id's successor, its step and start."""
    now = time.time()
    return Lock(id=uuid.uuid4().hex[:12], candidate=candidate, stable=stable, plan=plan,
                step=resume.step if resume else -1, host=socket.gethostname(), pid=os.getpid(),
                process_started=start_time(os.getpid()), started=resume.started if resume else now, updated=now,
                image=image, digest=digest, execution=os.environ.get("CLOUD_RUN_EXECUTION") or None)


def acquire(target: CloudRunService, lock: Lock, resume: Lock | None) -> Lock:
    """Record `lock` on the service: a compare-and-swap on its resourceVersion. The service is read, checked for a
    live rollout, and written with the version read; of two rollouts that read the same version, the second write
    is refused (409) and that rollout stops, naming the first. The history gains the stable revision."""
    settings = target.settings
    service = target.describe()
    annotations = Annotations.of(service)
    if resume is None:
        refuse_unreadable(annotations)
    other, live = held(annotations, target)
    if other and live and other.id != (resume.id if resume else None):
        raise RolloutError(f"a rollout of {other.candidate} is running ({other.who()}); this one stops without "
                           f"changing traffic")
    history = annotations.with_history(lock.stable)
    try:
        target.write(service, lock=lock, history=history if history != annotations.history else None)
    except Conflict:
        now, _ = held(target.annotations(), target)
        who = f"a rollout of {now.candidate} ({now.who()})" if now else "another change"
        raise RolloutError(f"{who} took service {target.name} at the same time; this one stops without "
                           f"changing traffic") from None
    return lock

