"""Model versions as servers: `functions/<name>/` run by functions-framework, or the image `iris:<name>`.

A model version is a folder of `functions/` with a `main.py`; its name is the folder's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from iris_tools import FUNCTIONS_DIR, ROOT
from iris_tools.servers import HOST, ContainerServer, ProcessServer, Server

CONTAINER_PORT = 8080
TARGET = "predict"
RUNTIMES = ("process", "docker")


def model_names() -> list[str]:
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


def functions_framework() -> Path:
    """The functions-framework of the venv running us (tests and tools run from .venv)."""
    return Path(sys.executable).parent / "functions-framework"


def function_command(source: Path | str, port: int, host: str = HOST) -> list[str]:
    """The README's command: functions-framework --source functions/<m>/main.py --target predict."""
    return [str(functions_framework()), "--source", str(source), "--target", TARGET,
            "--host", host, "--port", str(port)]


def start_function(source: Path | str, port: int, *, env: Mapping[str, str] | None = None,
                   log: Path | None = None, inherit_env: bool = True) -> ProcessServer:
    """functions-framework on `source` (a main.py), as a process group of its own."""
    environment = {"PYTHONUNBUFFERED": "1", **(env or {})}
    if not inherit_env:
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment}
    return ProcessServer.start(function_command(source, port), port=port, env=environment, cwd=ROOT, log=log,
                               inherit_env=inherit_env)


def start_version(model: str, port: int, runtime: str = "process", *, env: Mapping[str, str] | None = None,
                  log: Path | None = None, container_name: str | None = None, image: str | None = None) -> Server:
    """Model version `model` on loopback `port`: a functions-framework process, or its container image."""
    if runtime == "docker":
        environment = {"PORT": str(CONTAINER_PORT), **(env or {})}
        return ContainerServer.start(image or f"{os.environ.get('IMAGE', 'iris')}:{model}",
                                     name=container_name or f"iris_{model}", port=port, env=environment,
                                     container_port=int(environment["PORT"]))
    return start_function(FUNCTIONS_DIR / model / "main.py", port, env=env, log=log)
