"""`make rollback`: 100% back on the revision that had it before, and the undone one recorded as rolled back."""

from __future__ import annotations

from typing import Any, TextIO

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import HISTORY, LOCK, ROLLED_BACK, appended, lock_state, now_text
from iris_tools.rollout.service import Service, annotation, image_of, ready, shares


def rollback(target: Service, out: TextIO) -> int:
    service = target.describe()
    split = shares(service)
    current = max(split, key=split.get)
    lock, live = lock_state(service, target.settings)
    if lock and live:
        raise RolloutError(f"a rollout of {lock['candidate']} is running (pid {lock['pid']} on {lock['host']}): "
                           f"stop it first")
    history = annotation(service, HISTORY, [])
    revisions = {r["metadata"]["name"]: r for r in target.revisions()}
    if lock:
        to, undone = lock["stable"], lock["candidate"]
    else:
        earlier = [name for name in history if name != current and name in revisions and ready(revisions[name])]
        if not earlier:
            raise RolloutError(f"no earlier revision reached 100% of service {target.name} "
                               f"(history: {', '.join(history) or 'none'})")
        to, undone = earlier[-1], current
    target.set_traffic({to: 100})
    rolled_back = annotation(service, ROLLED_BACK, [])
    changes: dict[str, Any] = {LOCK: None, HISTORY: appended(history, to)}
    if undone != to:
        changes[ROLLED_BACK] = appended(rolled_back, {"revision": undone, "image": image_of(revisions.get(undone, {})),
                                                      "reason": "make rollback", "at": now_text()})
    target.annotate(changes, target.describe())
    print(f"100% of service {target.name} is on {to} again"
          + (f"; {undone} is recorded as rolled back (FORCE=1 rolls it out again)" if undone != to else ""),
          file=out)
    return 0
