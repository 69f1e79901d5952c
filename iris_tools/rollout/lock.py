"""What a rollout keeps on the service itself, as annotations (as Cloud Run keeps its own):

  iris-versions.dev/rollout      the rollout in progress: candidate, stable, steps, the step reached,
                                 who runs it (host, pid) and when it last moved. Only one at a time.
  iris-versions.dev/history      the revisions that reached 100%, oldest first (what `rollback` reads)
  iris-versions.dev/rolled-back  revisions rolled back (name, image, image digest), with why: not given
                                 traffic again by rollback, SPLIT= or rollout unless FORCE=1; known by
                                 digest, so a new revision of the same image is barred too. One rolled
                                 back only for too few requests is recorded with barred: false
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.service import Conflict, Service, annotation
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
    if not isinstance(step, int) or not isinstance(steps, list) or step >= len(steps):
        return f"{step!r} (not one of its steps {steps!r})"
    if step >= 0 and steps[step] == "pause":
        return f"{step + 1} of {len(steps)} (a pause: `make promote` goes on, `make rollback` aborts)"
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


def acquire(target: Service, candidate: str, stable: str, resume: dict[str, Any] | None,
            steps: list[Any]) -> dict[str, Any]:
    """Record this rollout on the service: a compare-and-swap on its resourceVersion. The service is read,
    checked for a live rollout, and written with the version read; of two rollouts that read the same
    version, the second write is refused (409) and that rollout stops, naming the first. The history gains
    the stable revision."""
    settings = target.settings
    service = target.describe()
    held, live = lock_state(service, settings)
    if held and live and held.get("id") != (resume or {}).get("id"):
        raise RolloutError(f"a rollout of {held['candidate']} is running (pid {held.get('pid')} on "
                           f"{held.get('host')}); this one stops without changing traffic")
    history = annotation(service, HISTORY, [])
    lock = {"id": uuid.uuid4().hex[:12], "candidate": candidate, "stable": stable, "steps": steps,
            "step": resume.get("step", -1) if resume else -1, "host": socket.gethostname(), "pid": os.getpid(),
            "started": resume.get("started", time.time()) if resume else time.time(), "updated": time.time(),
            "image": (resume or {}).get("image"), "digest": (resume or {}).get("digest")}
    changes: dict[str, Any] = {LOCK: lock}
    if not history or history[-1] != stable:
        changes[HISTORY] = appended(history, stable)
    try:
        target.annotate(changes, service)
    except Conflict:
        other, _ = lock_state(target.describe(), settings)
        who = (f"a rollout of {other.get('candidate')} (pid {other.get('pid')} on {other.get('host')})"
               if other else "another change")
        raise RolloutError(f"{who} took service {target.name} at the same time; this one stops without "
                           f"changing traffic") from None
    return lock


def digest_of(revision: dict[str, Any]) -> str | None:
    """The image digest a revision runs (`...@sha256:...`): what a rolled-back version is known by."""
    return revision.get("status", {}).get("imageDigest")


def barred(service: dict[str, Any], revision: dict[str, Any]) -> dict[str, Any] | None:
    """The rolled-back entry that bars `revision` (same image digest, or same name when no digest is known),
    or None. An entry rolled back only for too few requests bars nothing."""
    digest = digest_of(revision)
    name = revision.get("metadata", {}).get("name")
    for entry in reversed(annotation(service, ROLLED_BACK, [])):
        if not entry.get("barred", True):
            continue
        if (digest and entry.get("digest") == digest) or (not entry.get("digest") and entry.get("revision") == name):
            return entry
    return None


def barred_text(entry: dict[str, Any]) -> str:
    return (f"{entry.get('revision')} ({entry.get('image')}, {entry.get('digest') or 'no digest'}) was rolled back "
            f"at {entry.get('at')}: {entry.get('reason')}; give it traffic again only with FORCE=1")
