"""`make rollback`: 100% back on the revision that had it before, and the undone one recorded as rolled back.

It is also the abort: while a rollout runs (here or on any host) it sends 100% to that rollout's stable
revision at once and removes its lock, in one write; the rollout notices at its next poll, stops without
touching traffic again, and exits non-zero. A revision rolled back is barred (by image digest) from
being given traffic again by rollback, SPLIT= or a rollout unless FORCE=1.
"""

from __future__ import annotations

from typing import Any, TextIO

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import (
    HISTORY,
    LOCK,
    ROLLED_BACK,
    appended,
    barred,
    barred_text,
    digest_of,
    lock_state,
    now_text,
)
from iris_tools.rollout.service import Conflict, Service, annotation, image_of, ready, shares

ATTEMPTS = 5  # a write that lost a race with a rollout's own step is read and made again


def rollback(target: Service, out: TextIO) -> int:
    revisions = {r["metadata"]["name"]: r for r in target.revisions()}
    for _ in range(ATTEMPTS):
        service = target.describe()
        try:
            return _rollback_once(target, service, revisions, out)
        except Conflict:
            continue
    raise RolloutError(f"service {target.name} kept changing while rolling back ({ATTEMPTS} attempts); run "
                       f"`make rollback` again")


def _rollback_once(target: Service, service: dict[str, Any], revisions: dict[str, dict[str, Any]],
                   out: TextIO) -> int:
    split = shares(service)
    current = max(split, key=split.get)
    lock, live = lock_state(service, target.settings)
    history = annotation(service, HISTORY, [])
    force = target.settings.force
    if lock:
        to, undone = lock["stable"], lock["candidate"]
        reason = "aborted by make rollback" if live else "make rollback of an interrupted rollout"
    else:
        skipped = [name for name in history if name != current and name in revisions
                   and barred(service, revisions[name]) and not force]
        earlier = [name for name in history if name != current and name in revisions and ready(revisions[name])
                   and (force or not barred(service, revisions[name]))]
        if not earlier:
            why = f"; rolled back before, so skipped: {', '.join(dict.fromkeys(skipped))} (FORCE=1 allows them)" \
                if skipped else ""
            raise RolloutError(f"no earlier revision reached 100% of service {target.name} "
                               f"(history: {', '.join(history) or 'none'}){why}")
        to, undone, reason = earlier[-1], current, "make rollback"
    changes: dict[str, Any] = {LOCK: None, HISTORY: appended(history, to)}
    undone_revision = revisions.get(undone, {})
    if undone != to and not barred(service, undone_revision):
        changes[ROLLED_BACK] = appended(annotation(service, ROLLED_BACK, []), {
            "revision": undone, "image": image_of(undone_revision), "digest": digest_of(undone_revision),
            "reason": reason, "barred": True, "at": now_text()})
    target.annotate(changes, service, split={to: 100})  # the split, the lock's removal and the record: one write
    print(f"100% of service {target.name} is on {to} again"
          + (f"; the running rollout of {undone} was aborted and stops at its next poll" if lock and live else "")
          + (f"; {undone} is recorded as rolled back (FORCE=1 gives it traffic again)" if undone != to else ""),
          file=out)
    return 0


def check_not_barred(service: dict[str, Any], revision: dict[str, Any], force: bool) -> None:
    """Refuse to give traffic to a revision rolled back before, unless forced."""
    entry = barred(service, revision)
    if entry and not force:
        raise RolloutError(barred_text(entry))
