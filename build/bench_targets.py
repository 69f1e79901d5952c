"""What `build/bench.py` measures: the serving targets, each a way to start one HTTP server.

To add a target, append a `Target` in `all_targets()`; bench.py needs no change.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = os.environ.get("IMAGE", "iris")
TEST_POINT = (5.8, 3.4)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send(url: str, request: Request, timeout: float = 5.0) -> int:
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    message = urllib.request.Request(url + request.path, data=request.body or None, method=request.method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(message, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Handle:
    """A started server: its URL, its processes, and how to stop it."""

    def __init__(self, url: str, alive: Callable[[], bool], stop: Callable[[], None], pids: Callable[[], list[int]]):
        self.url, self._alive, self._stop, self._pids = url, alive, stop, pids

    def wait_ready(self, request: Request, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive():
                raise RuntimeError(f"{self.url}: the server exited before answering")
            try:
                if send(self.url, request, timeout=1.0) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.url}: no 200 within {timeout} s")

    def pids(self) -> list[int]:
        return self._pids()

    def stop(self) -> None:
        self._stop()


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def start_process(command: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Handle:
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, "PORT": str(port), **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    return Handle(f"http://127.0.0.1:{port}", lambda: process.poll() is None, stop, lambda: _group_pids(process.pid))


def start_container(image: str, port: int) -> Handle:
    name = f"iris_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run([DOCKER, "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080", image],
                   check=True, capture_output=True)

    def alive() -> bool:
        state = subprocess.run([DOCKER, "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
        return state.stdout.strip() == "true"

    def pids() -> list[int]:
        top = subprocess.run([DOCKER, "top", name, "-o", "pid"], capture_output=True, text=True).stdout
        return [int(line) for line in top.split()[1:] if line.isdigit()]

    def stop() -> None:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)

    return Handle(f"http://127.0.0.1:{port}", alive, stop, pids)


def batch_rows(rows: int, seed: int = 0) -> list[list[float]]:
    """Deterministic points spread over the iris sepal range."""
    import numpy as np

    generator = np.random.default_rng(seed)
    return np.column_stack([generator.uniform(4.0, 8.0, rows), generator.uniform(2.0, 4.5, rows)]).round(2).tolist()


def instances_request(rows: int) -> Request:
    return Request("POST", "/", json.dumps({"instances": batch_rows(rows)}).encode(), "application/json")


def inprocess_rows_per_s(model: str) -> Callable[[int], float]:
    """rows/s of the trained estimator's own predict, in this process: the batch yardstick."""

    def measure(rows: int) -> float:
        import joblib
        import numpy as np

        estimator = joblib.load(ROOT / "functions" / model / "model.joblib")
        X = np.array(batch_rows(rows))
        estimator.predict(X)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            estimator.predict(X)
            count += 1
        return count * rows / (time.perf_counter() - started)

    return measure


@dataclass
class Target:
    name: str
    group: str
    start_on: Callable[[int], Handle]
    single: Request
    batch: Callable[[int], Request] | None = None
    inprocess: Callable[[int], float] | None = None
    image: str | None = None
    requires: list[Callable[[], str | None]] = field(default_factory=list)

    def start(self) -> Handle:
        return self.start_on(free_port())

    def unavailable(self) -> str | None:
        for check in self.requires:
            reason = check()
            if reason:
                return reason
        return None

    def image_size(self) -> int:
        inspected = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Size}}", self.image],
                                   capture_output=True, text=True, check=True)
        return int(inspected.stdout.strip())


def _needs_image(image: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            found = subprocess.run([DOCKER, "image", "inspect", image], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "no docker"
        return None if found.returncode == 0 else f"no image {image} (make images)"

    return check


def model_names() -> list[str]:
    return sorted(path.parent.name for path in (ROOT / "functions").glob("*/main.py"))


GET_TEST_POINT = Request("GET", f"/?length={TEST_POINT[0]}&width={TEST_POINT[1]}")


def ours(model: str) -> Target:
    command = [str(VENV_BIN / "functions-framework"), "--source", f"functions/{model}/main.py",
               "--target", "predict", "--host", "127.0.0.1"]
    return Target(name=f"ours:{model}", group="ours",
                  start_on=lambda port: start_process([*command, "--port", str(port)], port),
                  single=GET_TEST_POINT, batch=instances_request, inprocess=inprocess_rows_per_s(model))


def ours_container(model: str) -> Target:
    image = f"{IMAGE}:{model}"
    return Target(name=f"container:{model}", group="container", start_on=lambda port: start_container(image, port),
                  single=GET_TEST_POINT, batch=instances_request, image=image, requires=[_needs_image(image)])


def all_targets() -> list[Target]:
    models = model_names()
    return [*(ours(m) for m in models), *(ours_container(m) for m in models)]


def ratios(results: list) -> list[str]:
    """The target ratios, each from figures of the same run."""
    return []
