"""Real servers for system tests: started on free loopback ports, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import ROOT

FUNCTIONS_FRAMEWORK = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "functions-framework"


def wait_for(url: str, alive, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"server for {url} exited before answering")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def function_command(source: Path, port: int) -> list[str]:
    """The README's command: functions-framework --source functions/<m>/main.py --target predict."""
    return [str(FUNCTIONS_FRAMEWORK), "--source", str(source), "--target", "predict",
            "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def function_server(source: Path, port: int, **environment: str) -> Iterator[str]:
    process = subprocess.Popen(function_command(source, port), cwd=ROOT, env={**os.environ, **environment},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/health", lambda: process.poll() is None)
        yield url
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout:
        process.stdout.close()
