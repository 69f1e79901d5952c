"""What `make up` started, one JSON file per version in `.run/` (RUN_DIR overrides), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iris_tools.environment import value
from iris_tools.local.servers import Server, adopt

RUN_DIR = value("RUN_DIR")


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never a torn one: write beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class Running:
    model: str
    runtime: str
    url: str
    log: str
    server: dict[str, Any] = field(default_factory=dict)  # Server.record()
    position: int = 0  # where PORTS lists it: the column order of comparisons

    @property
    def port(self) -> int:
        return int(self.server["port"])

    def handle(self) -> Server:
        return adopt(self.server)


def state_path(model: str, run_dir: Path = RUN_DIR) -> Path:
    return run_dir / "versions" / f"{model}.json"


def read_state(run_dir: Path = RUN_DIR) -> list[Running]:
    found = []
    for path in (run_dir / "versions").glob("*.json"):
        try:
            found.append(Running(**json.loads(path.read_text())))
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)  # written by an older layout: nothing we can adopt
    return sorted(found, key=lambda running: running.position)  # the order PORTS gave them


def write_state(running: Running, run_dir: Path = RUN_DIR) -> None:
    write_atomically(state_path(running.model, run_dir), json.dumps(asdict(running)))


def forget(model: str, run_dir: Path = RUN_DIR) -> None:
    state_path(model, run_dir).unlink(missing_ok=True)
