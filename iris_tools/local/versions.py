"""Model versions as servers: `functions/<name>/` run by functions-framework, or the image `iris:<name>`.

A model version is a folder of `functions/` with a `main.py`; its name is the folder's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from iris_tools.environment import value
from iris_tools.environment import ROOT
from iris_tools.local.servers import HOST, ContainerServer, ProcessServer, Server
from shared.artifact import is_imported

CONTAINER_PORT = 8080
TARGET = "predict"
RUNTIMES = ("process", "docker")
# IRIS_FUNCTIONS_DIR points the tools (and the local Cloud Run's image lookup) elsewhere, as the tests do for
# models made to fail.
FUNCTIONS_DIR: Path = value("IRIS_FUNCTIONS_DIR")


def model_names() -> list[str]:
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


def imported(name: str) -> bool:
    """A version `make import-model` wrote, not an iris one."""
    return is_imported(FUNCTIONS_DIR / name)


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


def start_as_in_image(source: Path | str, port: int, *, env: Mapping[str, str] | None = None,
                      log: Path | None = None, log_max_bytes: int | None = None) -> ProcessServer:
    """The model version as its container image runs it (`python -m shared.server`: gunicorn, JSON log
    lines on stdout, the graceful SIGTERM), as a process on loopback `port`."""
    environment = {"PYTHONUNBUFFERED": "1", "FUNCTION_SOURCE": str(source), "FUNCTION_TARGET": TARGET,
                   "HOST": HOST, **(env or {}), "PORT": str(port)}
    return ProcessServer.start([sys.executable, "-m", "shared.server"], port=port, env=environment, cwd=ROOT,
                               log=log, log_max_bytes=log_max_bytes)


def start_version(model: str, port: int, runtime: str = "process", *, env: Mapping[str, str] | None = None,
                  log: Path | None = None, container_name: str | None = None, image: str | None = None,
                  as_in_image: bool = False, log_max_bytes: int | None = None) -> Server:
    """Model version `model` on loopback `port`: a functions-framework process (`as_in_image`: run the way
    its image runs it), or its container image."""
    if runtime == "docker":
        environment = {"PORT": str(CONTAINER_PORT), **(env or {})}
        return ContainerServer.start(image or f"{value('IMAGE')}:{model}",
                                     name=container_name or f"iris_{model}", port=port, env=environment,
                                     container_port=int(environment["PORT"]), log=log, log_max_bytes=log_max_bytes)
    if as_in_image:
        return start_as_in_image(FUNCTIONS_DIR / model / "main.py", port, env=env, log=log,
                                 log_max_bytes=log_max_bytes)
    return start_function(FUNCTIONS_DIR / model / "main.py", port, env=env, log=log)
