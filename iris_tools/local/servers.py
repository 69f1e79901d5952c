"""A server I started: a process or a container, behind one interface.

    server = ProcessServer.start(command, port=..., env=..., log=path)   # or ContainerServer.start(image, ...)
    server.wait_ready("/health")       # polls until 200; raises ServerError with its log if it exits first
    server.logs(20)                    # the last lines it wrote
    server.stop()                      # SIGTERM, a grace period, then SIGKILL, the whole process group
    server.record() / adopt(record)    # a plain dict to keep on disk, and the server back from it

Processes start as the leader of a process group of their own and are stopped as
a whole group: gunicorn (under functions-framework), MLServer and Envoy fork
workers, and stopping only the process that was started leaves them behind. A
recorded server is adopted by another process (after `make stop`, or a control
plane restart) through its group id, which is why the group, not a Popen, is the
handle. The local runner, the benchmark, the tests and the local Cloud Run all
start servers through this module.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iris_tools import environment
from iris_tools.local import reaper
from iris_tools.local.processes import group_members, start_time

HOST = "127.0.0.1"
DEFAULT_GRACE_S = 10.0
DOCKER: str = environment.value("DOCKER")


class ServerError(Exception):
    """A server that did not start, or stopped answering; the message carries its log."""


# ---------------------------------------------------------------- ports


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


# ---------------------------------------------------------------- process groups


def stop_group(pgid: int, grace_s: float = DEFAULT_GRACE_S, reap: bool = True) -> None:
    """SIGTERM the group, give it `grace_s` seconds to finish what it is doing, then SIGKILL what is left.
    `reap=False` leaves the leader's exit status to its own Popen (whose wait would otherwise read 0)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while group_members(pgid) and time.monotonic() < deadline + 5:
            time.sleep(0.02)
    if reap:
        _reap(pgid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # where it is our child
    except ChildProcessError:
        pass


# ---------------------------------------------------------------- HTTP


def http_status(url: str, timeout: float = 1.0, method: str = "GET", body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> int:
    """The status of one request; OSError when nothing answers."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# ---------------------------------------------------------------- the interface


class Server(ABC):
    """A started HTTP server on a loopback port."""

    kind: str

    def __init__(self, port: int, host: str = HOST) -> None:
        self.port = port
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def logs(self, lines: int = 20) -> str: ...

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> None: ...

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """What `adopt` needs to find this server again from another process."""

    def wait_ready(self, path: str = "/health", timeout: float = 60.0,
                   ready: Callable[[], bool] | None = None, interval: float = 0.02) -> None:
        """Until GET `path` answers 200 (or `ready()` is true); ServerError with the log if it exits first."""
        check = ready or (lambda: http_status(self.url + path) == 200)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerError(f"{self.describe()} exited before it was ready; its log:\n{self.logs()}")
            try:
                if check():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(interval)
        raise ServerError(f"{self.describe()} was not ready within {timeout:.0f} s; its log:\n{self.logs()}")

    def describe(self) -> str:
        return f"{self.kind} server on port {self.port}"


class ProcessServer(Server):
    """A command run as the leader of its own process group, its output in a log file."""

    kind = "process"

    def __init__(self, pgid: int, port: int, log: Path | None, host: str = HOST,
                 process: subprocess.Popen | None = None, started: int | None = None) -> None:
        super().__init__(port, host)
        self.pgid = pgid
        self.log = log
        self._process = process
        self.started = started if started is not None else start_time(pgid)

    @classmethod
    def start(cls, command: list[str], *, port: int, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              log: Path | None = None, inherit_env: bool = True, host: str = HOST,
              log_max_bytes: int | None = None) -> "ProcessServer":
        """`log_max_bytes`: the output goes through a log shipper (iris_tools/cloudrun/log_shipper.py) that rotates
        `log` at that size; otherwise it is appended to `log` directly."""
        environment = {**(os.environ if inherit_env else {}), **(env or {})}
        output: Any = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            if log_max_bytes:
                output = log_shipper(log, log_max_bytes)  # it ends when the process (and all it started) closed it
            else:
                output = open(log, "ab")
        try:
            process = subprocess.Popen(command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ServerError(f"cannot run {command[0]}: {exc}") from None
        finally:
            if log is not None:
                output.close()
        server = cls(process.pid, port, log, host, process)
        reaper.register(server.record())
        return server

    @classmethod
    def adopt(cls, record: Mapping[str, Any]) -> "ProcessServer":
        started = record.get("start_time")
        return cls(int(record["pgid"]), int(record["port"]), Path(record["log"]) if record.get("log") else None,
                   record.get("host", HOST), started=int(started) if started is not None else -1)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "pgid": self.pgid, "port": self.port, "host": self.host,
                "log": str(self.log) if self.log else None, "start_time": self.started}

    def ours(self) -> bool:
        """Whether the group is still the one started: its leader runs with the recorded start time, or the
        leader is gone and its pid is free (Linux never hands out a pid that is a live group's id, so what
        is left of the group is ours). A record without a start time proves nothing and is never ours."""
        if self.started == -1:
            return False
        now = start_time(self.pgid)
        return now is None or now == self.started

    def alive(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            return False
        return self.ours() and bool(group_members(self.pgid))

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def pids(self) -> list[int]:
        return group_members(self.pgid)

    def logs(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        with open(self.log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        if self.ours():  # a group that is not the one started is never signalled
            stop_group(self.pgid, grace_s)
        reaper.unregister(self.record())
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def describe(self) -> str:
        return f"process group {self.pgid} (port {self.port})"


def log_shipper(log: Path, max_bytes: int) -> Any:
    """A log shipper (iris_tools/cloudrun/log_shipper.py) writing `log`, rotated at `max_bytes`: the pipe to write
    its input to (close it once a writer has it)."""
    with open(f"{log}.shipper-errors", "ab") as errors:
        shipper = subprocess.Popen([sys.executable, "-m", "iris_tools.cloudrun.log_shipper", str(log), str(max_bytes)],
                                   cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    return shipper.stdin


class ContainerServer(Server):
    """A `docker run -d` container with its port published on loopback."""

    kind = "docker"

    def __init__(self, name: str, port: int, host: str = HOST, docker: str = DOCKER) -> None:
        super().__init__(port, host)
        self.name = name
        self.docker = docker

    @classmethod
    def start(cls, image: str, *, name: str, port: int, env: Mapping[str, str] | None = None,
              container_port: int = 8080, host: str = HOST, docker: str = DOCKER,
              extra_args: list[str] | None = None, log: Path | None = None,
              log_max_bytes: int | None = None) -> "ContainerServer":
        """`log`: the container's output (`docker logs --follow`, stdout and stderr) goes through a log shipper into
        it, rotated at `log_max_bytes`, as a process's does; the follower ends when the container is removed."""
        command = [docker, "run", "-d", "--name", name, "-p", f"{host}:{port}:{container_port}"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        command += [*(extra_args or []), image]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"docker run {image} failed: {exc}") from None
        if result.returncode != 0:
            missing = "Unable to find image" in result.stderr or "No such image" in result.stderr
            hint = " (build it with `make images`)" if missing else ""
            subprocess.run([docker, "rm", "-f", name], capture_output=True)
            raise ServerError(f"docker run {image} failed{hint}: {result.stderr.strip()}")
        server = cls(name, port, host, docker)
        reaper.register(server.record())
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = log_shipper(log, log_max_bytes or 1 << 40)
            try:
                subprocess.Popen([docker, "logs", "--follow", name], stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            except OSError:
                pass  # no follower: the container serves, its lines are not collected (docker logs still has them)
            finally:
                output.close()
        return server

    @classmethod
    def adopt(cls, record: Mapping[str, Any]) -> "ContainerServer":
        return cls(record["name"], int(record["port"]), record.get("host", HOST), record.get("docker", DOCKER))

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "port": self.port, "host": self.host, "docker": self.docker}

    def _docker(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(args, 1, "", str(exc))

    def alive(self) -> bool:
        return self._docker("inspect", "-f", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def pids(self) -> list[int]:
        top = self._docker("top", self.name, "-o", "pid").stdout
        return [int(line) for line in top.split()[1:] if line.isdigit()]

    def logs(self, lines: int = 20) -> str:
        result = self._docker("logs", "--tail", str(lines), self.name)
        return (result.stdout + result.stderr).strip() or "(no log)"

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        self._docker("stop", "-t", str(int(grace_s)), self.name, timeout=grace_s + 30)
        self._docker("rm", "-f", self.name)
        reaper.unregister(self.record())

    def describe(self) -> str:
        return f"container {self.name} (port {self.port})"


def adopt(record: Mapping[str, Any]) -> Server:
    """A server from its `record()`, in any process."""
    if record.get("kind") == ContainerServer.kind:
        return ContainerServer.adopt(record)
    return ProcessServer.adopt(record)
