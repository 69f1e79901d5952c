"""What a rollout keeps on the service itself, as annotations (as Cloud Run keeps its own):

  iris-versions.dev/rollout      the rollout in progress: candidate, stable, steps, the step reached,
                                 who runs it (host, pid) and when it last moved. Only one at a time.
  iris-versions.dev/history      the revisions that reached 100%, oldest first (what `rollback` reads)
  iris-versions.dev/rolled-back  revisions (and their images) rolled back, with why: not rolled out
                                 again unless forced
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.service import Service, annotation
from iris_tools.rollout.settings import Settings

LOCK = "iris-versions.dev/rollout"
HISTORY = "iris-versions.dev/history"
ROLLED_BACK = "iris-versions.dev/rolled-back"
KEEP = 20  # entries kept in the history and the rolled-back list


def appended(entries: list[Any], entry: Any) -> list[Any]:
    return [*entries, entry][-KEEP:]


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def step_text(lock: dict[str, Any]) -> str:
    step = lock.get("step", -1)
    steps = lock.get("steps", [])
    return "none yet" if step < 0 else f"{step + 1} of {len(steps)} ({steps[step]}%)"


def is_live(lock: dict[str, Any], settings: Settings) -> bool:
    """Whether the rollout that wrote `lock` still runs: by its pid on this host, by its age elsewhere."""
    if lock.get("host") == socket.gethostname():
        try:
            os.kill(int(lock["pid"]), 0)
            return True
        except (ProcessLookupError, ValueError, KeyError):
            return False
        except PermissionError:
            return True
    stale_after = 3 * settings.step_seconds + settings.max_hold_seconds + 120
    return time.time() - float(lock.get("updated", 0)) < stale_after


def lock_state(service: dict[str, Any], settings: Settings) -> tuple[dict[str, Any] | None, bool]:
    """(the recorded rollout or None, whether it is still running)."""
    lock = annotation(service, LOCK, None)
    return (lock, is_live(lock, settings)) if lock else (None, False)


def acquire(target: Service, candidate: str, stable: str, resume: dict[str, Any] | None) -> dict[str, Any]:
    """Record this rollout on the service, then check, after a pause in which a racing rollout's write
    would land, that the record is still this one's. The history gains the stable revision."""
    settings = target.settings
    service = target.describe()
    history = annotation(service, HISTORY, [])
    lock = {"id": uuid.uuid4().hex[:12], "candidate": candidate, "stable": stable, "steps": settings.steps,
            "step": resume.get("step", -1) if resume else -1, "host": socket.gethostname(), "pid": os.getpid(),
            "started": resume.get("started", time.time()) if resume else time.time(), "updated": time.time(),
            "image": (resume or {}).get("image")}
    changes: dict[str, Any] = {LOCK: lock}
    if not history or history[-1] != stable:
        changes[HISTORY] = appended(history, stable)
    target.annotate(changes, service)
    time.sleep(settings.lock_settle_seconds)  # a racing rollout's write lands in this time
    held, _ = lock_state(target.describe(), settings)
    if not held or held.get("id") != lock["id"]:
        other = held or {}
        raise RolloutError(f"another rollout took service {target.name} at the same time "
                           f"(candidate {other.get('candidate')}, pid {other.get('pid')} on {other.get('host')}); "
                           f"this one stops without changing traffic")
    return lock
