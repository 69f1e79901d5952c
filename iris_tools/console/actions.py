"""What the console's buttons do: the command-line tools' own functions (`make traffic SPLIT=`, `make rollback`,
`make promote`), their results returned as data. The same checks refuse the same things with the same words (a
split that does not add to 100, a barred revision, a running rollout that owns the traffic): each refusal is an
exception, mapped to its HTTP status in console/errors.py."""

from __future__ import annotations

from typing import Any

from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.rollout.promote import promote
from iris_tools.rollout.rollback import rollback
from iris_tools.rollout.traffic import set_split


def set_traffic(target: CloudRunService, split: str) -> dict[str, Any]:
    done = set_split(target, split)
    return {"done": f"traffic of {target.name} set to {done}", "split": done.as_dict()}


def roll_back(target: CloudRunService) -> dict[str, Any]:
    done = rollback(target)
    return {"done": done.text(), "to": done.to, "undone": done.undone, "aborted": done.aborted}


def promote_paused(target: CloudRunService) -> dict[str, Any]:
    done = promote(target)
    return {"done": done.text(), "candidate": done.lock.candidate, "running": done.live}
