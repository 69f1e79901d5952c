"""`make promote`: let a rollout waiting at a pause step (STEPS="5 25 pause 50 100") go on.

It marks the rollout's lock as promoted (who, when), in one write carrying the version read; the rollout sees it at
its next poll and moves to its next step. `make rollback` is the other answer to a pause.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, replace

from iris_tools.rollout.cloud_run import CloudRunService, retrying
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import held, refuse_unreadable
from iris_tools.rollout.records import Annotations, Lock, now_text


@dataclass(frozen=True)
class Promoted:
    """What `make promote` did."""

    lock: Lock
    live: bool

    def text(self) -> str:
        return (f"promoted: the rollout of {self.lock.candidate} goes on from step {self.lock.step_text()}"
                + ("" if self.live else " when it is resumed (`make rollout`): it is not running now"))


def promote(target: CloudRunService) -> Promoted:
    def attempt() -> Promoted:
        service = target.describe()
        annotations = Annotations.of(service)
        refuse_unreadable(annotations)
        lock, live = held(annotations, target)
        if not lock or not lock.paused:
            where = f"the rollout of {lock.candidate} is at step {lock.step_text()}" if lock else "no rollout runs"
            raise RolloutError(f"nothing waits for `make promote` on service {target.name}: {where}")
        lock = replace(lock, promoted=f"{getpass.getuser()}@{socket.gethostname()} at {now_text()}")
        target.write(service, lock=lock)
        return Promoted(lock, live)

    return retrying(attempt, f"service {target.name} kept changing; run `make promote` again")
