"""`make rollback`: 100% back on the revision that had it before, and the undone one recorded as rolled back.

It is also the abort: while a rollout runs (here or on any host) it sends 100% to that rollout's stable revision at
once and removes its lock, in one write; the rollout notices at its next poll, stops without touching traffic again,
and exits non-zero. A revision rolled back is barred (by image digest) from being given traffic again by rollback,
SPLIT= or a rollout unless FORCE=1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iris_tools.rollout.cloud_run import CloudRunService, digest_of, image_of, name_of, ready, retrying
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import held
from iris_tools.rollout.records import Annotations, RolledBack, now_text
from iris_tools.rollout.split import Split


@dataclass(frozen=True)
class RolledBackTo:
    """What `make rollback` did."""

    service: str
    to: str
    undone: str
    aborted: bool  # a running rollout was aborted

    def text(self) -> str:
        return (f"100% of service {self.service} is on {self.to} again"
                + (f"; the running rollout of {self.undone} was aborted and stops at its next poll" if self.aborted
                   else "")
                + (f"; {self.undone} is recorded as rolled back (FORCE=1 gives it traffic again)"
                   if self.undone != self.to else ""))


def rollback(target: CloudRunService) -> RolledBackTo:
    revisions = {name_of(r): r for r in target.revisions()}
    return retrying(lambda: _rollback_once(target, target.describe(), revisions),
                    f"service {target.name} kept changing while rolling back; run `make rollback` again")


def _rollback_once(target: CloudRunService, service: dict[str, Any],
                   revisions: dict[str, dict[str, Any]]) -> RolledBackTo:
    annotations = Annotations.of(service)
    current = Split.of(service).largest()
    lock, live = held(annotations, target)
    force = target.settings.force
    if lock:
        to, undone = lock.stable, lock.candidate
        reason = "aborted by make rollback" if live else "make rollback of an interrupted rollout"
    else:  # no rollout, or one whose lock does not parse (removed by this write)
        def is_barred(name: str) -> bool:
            return annotations.barring(name, digest_of(revisions[name])) is not None

        skipped = [n for n in annotations.history if n != current and n in revisions and is_barred(n) and not force]
        earlier = [n for n in annotations.history if n != current and n in revisions and ready(revisions[n])
                   and (force or not is_barred(n))]
        if not earlier:
            why = f"; rolled back before, so skipped: {', '.join(dict.fromkeys(skipped))} (FORCE=1 allows them)" \
                if skipped else ""
            raise RolloutError(f"no earlier revision reached 100% of service {target.name} "
                               f"(history: {', '.join(annotations.history) or 'none'}){why}")
        to, undone, reason = earlier[-1], current, "make rollback"
    undone_revision = revisions.get(undone or "", {})
    rolled_back = None
    if undone and undone != to and not annotations.barring(undone, digest_of(undone_revision)):
        rolled_back = annotations.with_rolled_back(RolledBack(undone, image_of(undone_revision),
                                                              digest_of(undone_revision), reason, True, now_text()))
    # the split, the lock's removal and the record: one write
    target.write(service, split=Split.all_on(to), lock=None, history=annotations.with_history(to),
                 rolled_back=rolled_back)
    return RolledBackTo(target.name, to, undone or to, bool(lock and live))


def check_not_barred(annotations: Annotations, revision: dict[str, Any], force: bool) -> None:
    """Refuse to give traffic to a revision rolled back before, unless forced."""
    entry = annotations.barring(name_of(revision), digest_of(revision))
    if entry and not force:
        raise RolloutError(entry.text())
