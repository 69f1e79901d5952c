"""`make promote`: let a rollout waiting at a pause step (STEPS="5 25 pause 50 100") go on.

It marks the rollout's lock as promoted (who, when), in one write carrying the version read; the rollout
sees it at its next poll and moves to its next step. `make rollback` is the other answer to a pause.
"""

from __future__ import annotations

import getpass
import socket
from typing import TextIO

from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import LOCK, lock_state, now_text, step_text
from iris_tools.rollout.service import Conflict, Service

ATTEMPTS = 5


def promote(target: Service, out: TextIO) -> int:
    for _ in range(ATTEMPTS):
        service = target.describe()
        lock, live = lock_state(service, target.settings)
        if not lock or not lock.get("paused"):
            where = f"the rollout of {lock['candidate']} is at step {step_text(lock)}" if lock else "no rollout runs"
            raise RolloutError(f"nothing waits for `make promote` on service {target.name}: {where}")
        lock["promoted"] = f"{getpass.getuser()}@{socket.gethostname()} at {now_text()}"
        try:
            target.annotate({LOCK: lock}, service)
        except Conflict:
            continue
        print(f"promoted: the rollout of {lock['candidate']} goes on from step {step_text(lock)}"
              + ("" if live else " when it is resumed (`make rollout`): it is not running now"), file=out)
        return 0
    raise RolloutError(f"service {target.name} kept changing; run `make promote` again")
