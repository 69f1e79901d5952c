"""What the console's buttons do: the command-line tools' own functions (`make traffic SPLIT=`, `make rollback`,
`make promote`), their printed output returned as the answer. The same checks refuse the same things: a split
that does not add to 100, a barred revision, a running rollout that owns the traffic."""

from __future__ import annotations

import io
from typing import Any

from iris_tools.google.monitoring import Monitoring
from iris_tools.rollout.promote import promote
from iris_tools.rollout.rollback import rollback
from iris_tools.rollout.service import Service
from iris_tools.rollout.traffic import set_split


def set_traffic(target: Service, monitoring: Monitoring, split: str) -> dict[str, Any]:
    out = io.StringIO()
    set_split(target, monitoring, split, out)
    return {"done": f"traffic of {target.name} set to {split}", "output": out.getvalue()}


def roll_back(target: Service) -> dict[str, Any]:
    out = io.StringIO()
    rollback(target, out)
    return {"done": out.getvalue().strip(), "output": out.getvalue()}


def promote_paused(target: Service) -> dict[str, Any]:
    out = io.StringIO()
    promote(target, out)
    return {"done": out.getvalue().strip(), "output": out.getvalue()}
