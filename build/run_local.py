"""Run every model version side by side on loopback, compare their answers, stop them.

    python build/run_local.py up      [--runtime process|docker] [--ports "svc=5001 lin_svc=5002"]
    python build/run_local.py demo    (up, compare, then serve until Ctrl-C or `stop`)
    python build/run_local.py compare [POINT ...] [--url NAME=URL ...]
    python build/run_local.py status
    python build/run_local.py stop

A version is a folder `functions/<name>/` with a `main.py`. The `process` runtime
starts `functions-framework --target predict` on it; the `docker` runtime runs
the image `iris:<name>` as container `iris_<name>`. What runs is recorded in
`.run/<name>.json` (RUN_DIR overrides), which `compare`, `status` and `stop` read.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_group import members, spawn, stop_group  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
RUN_DIR = Path(os.environ.get("RUN_DIR", ROOT / ".run"))
HOST = "127.0.0.1"
CONTAINER_PORT = 8080
DEFAULT_PORTS = "svc=5001 lin_svc=5002"
DEFAULT_POINT = "5.8,3.4"
SERVICE_NAME = os.environ.get("SERVICE_NAME", "iris")
IMAGE = os.environ.get("IMAGE", "iris")
DOCKER = os.environ.get("DOCKER", "docker")
READY_TIMEOUT_S = float(os.environ.get("READY_TIMEOUT_S", "60"))
STOP_GRACE_S = 10.0


class RunError(Exception):
    """Something the user can fix; printed without a traceback."""


@dataclass
class Running:
    model: str
    runtime: str
    port: int
    url: str
    log: str
    position: int = 0  # where PORTS lists it: the column order of comparisons
    pid: int | None = None
    container: str | None = None


# ---------------------------------------------------------------- discovery


def model_names() -> list[str]:
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


def parse_ports(spec: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in spec.replace(",", " ").split():
        name, sep, number = item.partition("=")
        if not sep or not number.isdigit() or not 0 < int(number) < 65536:
            raise RunError(f"PORTS: {item!r} is not NAME=PORT (example: PORTS=\"{DEFAULT_PORTS}\")")
        ports[name] = int(number)
    return ports


def assign_ports(models: list[str], spec: str) -> dict[str, int]:
    """Ports named in `spec`, in its order; every other version gets the next number up."""
    named = parse_ports(spec)
    assigned = {model: port for model, port in named.items() if model in models}
    following = max(assigned.values(), default=5000) + 1
    for model in models:
        if model not in assigned:
            while following in assigned.values():
                following += 1
            assigned[model] = following
            following += 1
    return assigned


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


# ---------------------------------------------------------------- state


def state_path(model: str) -> Path:
    return RUN_DIR / f"{model}.json"


def read_state() -> list[Running]:
    if not RUN_DIR.is_dir():
        return []
    found = [Running(**json.loads(path.read_text())) for path in RUN_DIR.glob("*.json")]
    return sorted(found, key=lambda running: running.position)  # the order PORTS gave them


def write_state(running: Running) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    state_path(running.model).write_text(json.dumps(asdict(running)))


def is_alive(running: Running) -> bool:
    if running.pid is not None:
        return bool(members(running.pid))  # the server's process group: its leader and workers
    result = subprocess.run(
        [DOCKER, "inspect", "-f", "{{.State.Running}}", running.container or ""],
        capture_output=True, text=True,
    )
    return result.stdout.strip() == "true"


# ---------------------------------------------------------------- HTTP


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(running: Running, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not is_alive(running):
            raise RunError(f"{running.model} exited before it was ready; its log:\n{tail(running)}")
        try:
            status, _ = get_json(running.url + "/health", timeout=1.0)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RunError(f"{running.model} was not ready within {READY_TIMEOUT_S:.0f} s; its log:\n{tail(running)}")


def tail(running: Running, lines: int = 20) -> str:
    if running.container:
        result = subprocess.run([DOCKER, "logs", "--tail", str(lines), running.container],
                                capture_output=True, text=True)
        return (result.stdout + result.stderr).strip()
    path = Path(running.log)
    return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no log)"


# ---------------------------------------------------------------- start / stop


def start_process(model: str, port: int, position: int) -> Running:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RUN_DIR / f"{model}.log"
    executable = Path(sys.executable).parent / "functions-framework"
    command = [str(executable), "--source", str(FUNCTIONS_DIR / model / "main.py"),
               "--target", "predict", "--host", HOST, "--port", str(port)]
    environment = {**os.environ, "K_SERVICE": SERVICE_NAME, "K_REVISION": f"{SERVICE_NAME}-{model}-local",
                   "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = spawn(command, cwd=ROOT, env=environment, stdout=log)
    return Running(model=model, runtime="process", port=port, url=f"http://{HOST}:{port}",
                   log=str(log_path), position=position, pid=process.pid)


def start_container(model: str, port: int, position: int) -> Running:
    name = f"{IMAGE}_{model}"
    command = [DOCKER, "run", "--rm", "-d", "--name", name, "-p", f"{HOST}:{port}:{CONTAINER_PORT}",
               "-e", f"K_SERVICE={SERVICE_NAME}", "-e", f"K_REVISION={SERVICE_NAME}-{model}-local",
               f"{IMAGE}:{model}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        hint = " (build it with `make images`)" if "Unable to find image" in result.stderr or "No such image" in result.stderr else ""
        raise RunError(f"docker run for {model} failed{hint}: {result.stderr.strip()}")
    return Running(model=model, runtime="docker", port=port, url=f"http://{HOST}:{port}",
                   log=f"docker logs {name}", position=position, container=name)


def stop(running: Running) -> None:
    if running.container:
        subprocess.run([DOCKER, "stop", "-t", str(int(STOP_GRACE_S)), running.container],
                       capture_output=True)
        subprocess.run([DOCKER, "rm", "-f", running.container], capture_output=True)
    elif running.pid is not None:
        stop_group(running.pid, STOP_GRACE_S)
        try:
            os.waitpid(running.pid, os.WNOHANG)  # reap it, where it is our child (demo)
        except ChildProcessError:
            pass
    state_path(running.model).unlink(missing_ok=True)


def up(runtime: str, ports_spec: str) -> list[Running]:
    models = model_names()
    if not models:
        raise RunError(f"no model versions under {FUNCTIONS_DIR}")
    already = [running for running in read_state() if is_alive(running)]
    if already:
        listing = ", ".join(f"{r.model} on {r.port}" for r in already)
        raise RunError(f"already running: {listing}; stop them first with `make stop`")
    for stale in read_state():
        state_path(stale.model).unlink(missing_ok=True)
    ports = assign_ports(models, ports_spec)
    taken = [(model, port) for model, port in ports.items() if not port_is_free(port)]
    if taken:
        described = ", ".join(f"{port} (for {model})" for model, port in taken)
        suggestion = " ".join(f"{model}={port + 100 if (model, port) in taken else port}"
                              for model, port in ports.items())
        raise RunError(f"port {described} already in use on {HOST}; choose others with "
                       f"PORTS, for example: make demo PORTS=\"{suggestion}\"")
    start = start_container if runtime == "docker" else start_process
    started: list[Running] = []
    try:
        for position, (model, port) in enumerate(ports.items()):
            running = start(model, port, position)
            write_state(running)
            started.append(running)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for running in started:
            wait_ready(running, deadline)
    except BaseException:
        for running in started:
            stop(running)
        raise
    for running in started:
        print(f"{running.model:<10} {running.runtime:<8} {running.url}   ({running.log})")
    return started


def stop_all() -> int:
    stopped = read_state()
    for running in stopped:
        stop(running)
        print(f"stopped {running.model} ({running.runtime}, port {running.port})")
    if not stopped:
        print("nothing running")
    return 0


# ---------------------------------------------------------------- compare


def parse_points(tokens: list[str]) -> list[tuple[float, ...]]:
    """'5.8,3.4 6.1,2.8' or '5.8 3.4': comma-joined points, or a plain pair of numbers."""
    if not tokens:
        tokens = [DEFAULT_POINT]
    if all("," not in token for token in tokens) and len(tokens) % 2 == 0:
        tokens = [f"{a},{b}" for a, b in zip(tokens[::2], tokens[1::2])]
    points = []
    for token in tokens:
        try:
            points.append(tuple(float(value) for value in token.split(",")))
        except ValueError:
            raise RunError(f"POINT: {token!r} is not comma-separated numbers (example: POINT=\"5.8,3.4 6.1,2.8\")") from None
    return points


def compare(points: list[tuple[float, ...]], targets: list[tuple[str, str]]) -> int:
    if not targets:
        raise RunError("nothing to compare: start the versions with `make demo` or `make up`, or pass URLS")
    described = []
    for name, url in targets:
        try:
            status, meta = get_json(url.rstrip("/") + "/metadata")
        except OSError as exc:
            raise RunError(f"{name} at {url} does not answer: {exc}") from None
        if status != 200:
            raise RunError(f"{name} at {url}: GET /metadata answered {status}")
        described.append((name, url.rstrip("/"), meta))
    aliases = [feature["alias"] for feature in described[0][2]["model"]["features"]]
    print("versions:")
    for name, url, meta in described:
        model = meta["model"]
        print(f"  {name:<10} {url:<24} revision {meta['serving']['revision'] or '-':<22} "
              f"{model['algorithm'].rsplit('.', 1)[-1]:<10} training accuracy {model['training_accuracy']:.3f}")
    headers = [*aliases, *(name for name, _, _ in described), ""]
    rows = []
    disagreements = 0
    for point in points:
        if len(point) != len(aliases):
            raise RunError(f"point {point} has {len(point)} values; the models take {len(aliases)} ({', '.join(aliases)})")
        query = urllib.parse.urlencode(dict(zip(aliases, (repr(v) for v in point))))
        answers = []
        for _, url, _ in described:
            status, body = get_json(f"{url}/?{query}")
            answers.append(body["predicted_class"] if status == 200 else f"error {status}: {body.get('error')}")
        differ = len(set(answers)) > 1
        disagreements += differ
        rows.append([*(f"{v:g}" for v in point), *answers, "<- differ" if differ else "same"])
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    print()
    for line in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"\n{disagreements} of {len(points)} point(s) answered differently by the versions")
    return 0


def running_targets() -> list[tuple[str, str]]:
    return [(running.model, running.url) for running in read_state() if is_alive(running)]


def parse_urls(items: list[str]) -> list[tuple[str, str]]:
    targets = []
    for item in items:
        name, sep, url = item.partition("=")
        targets.append((name, url) if sep and not name.startswith("http") else (item, item))
    return targets


# ---------------------------------------------------------------- demo


def serve_until_stopped(started: list[Running]) -> int:
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        print("\nServing. Try:")
        for running in started:
            print(f"  curl '{running.url}/?length=5.8&width=3.4'")
        print("Ctrl-C here, or `make stop` elsewhere, stops them.", flush=True)
        while not stop_requested:
            time.sleep(0.2)
            if not any(state_path(r.model).exists() for r in started):
                print("stopped elsewhere (make stop)")
                return 0
            for running in started:
                if state_path(running.model).exists() and not is_alive(running):
                    print(f"{running.model} exited unexpectedly; its log:\n{tail(running)}", file=sys.stderr)
                    return 1
    finally:
        for running in started:
            if state_path(running.model).exists():
                stop(running)
    print("\nstopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "demo"):
        command = commands.add_parser(name)
        command.add_argument("--runtime", choices=["process", "docker"], default="process")
        command.add_argument("--ports", default=DEFAULT_PORTS, help=f"NAME=PORT pairs (default: {DEFAULT_PORTS})")
        command.add_argument("--point", nargs="*", default=[], help="points for the comparison")
    compare_command = commands.add_parser("compare")
    compare_command.add_argument("points", nargs="*", help=f"comma-separated points (default: {DEFAULT_POINT})")
    compare_command.add_argument("--url", action="append", default=[], help="NAME=URL of a version to compare")
    commands.add_parser("status")
    commands.add_parser("stop")
    args = parser.parse_args(argv)
    try:
        if args.command in ("up", "demo"):
            started = up(args.runtime, args.ports)
            print()
            try:
                compare(parse_points(args.point), [(r.model, r.url) for r in started])
            except BaseException:
                if args.command == "demo":
                    for running in started:
                        stop(running)
                raise
            return serve_until_stopped(started) if args.command == "demo" else 0
        if args.command == "compare":
            return compare(parse_points(args.points), parse_urls(args.url) or running_targets())
        if args.command == "status":
            for running in read_state():
                print(f"{running.model:<10} {running.runtime:<8} {running.url:<24} "
                      f"{'up' if is_alive(running) else 'exited'}")
            return 0
        return stop_all()
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Whatever had started was stopped on the way out (see up and demo).
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
