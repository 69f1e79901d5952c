"""Run every model version side by side on loopback, compare their answers, stop them.

    python -m iris_tools.local up      [--runtime process|docker] [--ports "svc=5001 lin_svc=5002"]
    python -m iris_tools.local demo    (up, compare, then serve until Ctrl-C or `stop`)
    python -m iris_tools.local compare [POINT ...] [--url NAME=URL ...]
    python -m iris_tools.local status
    python -m iris_tools.local stop

A version is a folder `functions/<name>/` with a `main.py`. The `process` runtime
starts `functions-framework --target predict` on it; the `docker` runtime runs
the image `iris:<name>` as container `iris_<name>`. What runs is recorded in
`.run/versions/<name>.json` (RUN_DIR overrides), which `compare`, `status` and `stop` read.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from iris_tools import environment
from iris_tools.environment import value
from iris_tools.local.feedback_key import current_key
from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.local.comparison import DEFAULT_POINT, RunError, compare, parse_points, parse_urls
from iris_tools.local.servers import HOST, Server, ServerError, port_is_free
from iris_tools.local.state import RUN_DIR, Running, forget, read_state, state_path, write_state
from iris_tools.local.versions import RUNTIMES, model_names, start_version

DEFAULT_PORTS = "svc=5001 lin_svc=5002"
SERVICE_NAME: str = value("SERVICE_NAME")
STOP_GRACE_S = 10.0


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


# ---------------------------------------------------------------- start / stop


def start(model: str, runtime: str, port: int, position: int) -> Running:
    environment = {"K_SERVICE": SERVICE_NAME, "K_REVISION": f"{SERVICE_NAME}-{model}-local"}
    key = current_key(RUN_DIR)
    if key:  # labels signed with the key `make feedback-key` keeps (or FEEDBACK_KEY) are taken; else /feedback is off
        environment["FEEDBACK_KEY"] = key
    log = RUN_DIR / "versions" / f"{model}.log"
    try:
        server = start_version(model, port, runtime, env=environment, log=log)
    except ServerError as exc:
        raise RunError(f"{model}: {exc}") from None
    described = f"docker logs {server.record()['name']}" if runtime == "docker" else str(log)
    return Running(model=model, runtime=runtime, url=server.url, log=described, server=server.record(),
                   position=position)


def stop(running: Running) -> None:
    running.handle().stop(STOP_GRACE_S)
    forget(running.model, RUN_DIR)


def up(runtime: str, ports_spec: str) -> list[Running]:
    models = model_names()
    if not models:
        raise RunError(f"no model versions under {FUNCTIONS_DIR}")
    already = [running for running in read_state(RUN_DIR) if running.handle().alive()]
    if already:
        listing = ", ".join(f"{r.model} on {r.port}" for r in already)
        raise RunError(f"already running: {listing}; stop them first with `make stop`")
    for stale in read_state(RUN_DIR):
        forget(stale.model, RUN_DIR)
    ports = assign_ports(models, ports_spec)
    taken = [(model, port) for model, port in ports.items() if not port_is_free(port)]
    if taken:
        described = ", ".join(f"{port} (for {model})" for model, port in taken)
        suggestion = " ".join(f"{model}={port + 100 if (model, port) in taken else port}"
                              for model, port in ports.items())
        raise RunError(f"port {described} already in use on {HOST}; choose others with "
                       f"PORTS, for example: make demo PORTS=\"{suggestion}\"")
    started: list[Running] = []
    try:
        for position, (model, port) in enumerate(ports.items()):
            running = start(model, runtime, port, position)
            write_state(running, RUN_DIR)
            started.append(running)
        deadline = time.monotonic() + value("READY_TIMEOUT_S")
        for running in started:
            try:
                running.handle().wait_ready("/health", timeout=max(1.0, deadline - time.monotonic()))
            except ServerError as exc:
                raise RunError(f"{running.model}: {exc}") from None
    except BaseException:
        for running in started:
            stop(running)
        raise
    for running in started:
        print(f"{running.model:<10} {running.runtime:<8} {running.url}   ({running.log})")
    return started


def stop_all() -> int:
    stopped = read_state(RUN_DIR)
    for running in stopped:
        stop(running)
        print(f"stopped {running.model} ({running.runtime}, port {running.port})")
    if not stopped:
        print("nothing running")
    return 0


def running_targets() -> list[tuple[str, str]]:
    return [(running.model, running.url) for running in read_state(RUN_DIR) if running.handle().alive()]


# ---------------------------------------------------------------- demo


def serve_until_stopped(started: list[Running]) -> int:
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    handles: dict[str, Server] = {r.model: r.handle() for r in started}
    try:
        print("\nServing. Try:")
        for running in started:
            print(f"  curl '{running.url}/?length=5.8&width=3.4'")
        print("Ctrl-C here, or `make stop` elsewhere, stops them.", flush=True)
        while not stop_requested:
            time.sleep(0.2)
            if not any(state_path(r.model, RUN_DIR).exists() for r in started):
                print("stopped elsewhere (make stop)")
                return 0
            for running in started:
                if state_path(running.model, RUN_DIR).exists() and not handles[running.model].alive():
                    print(f"{running.model} exited unexpectedly; its log:\n{handles[running.model].logs()}",
                          file=sys.stderr)
                    return 1
    finally:
        for running in started:
            if state_path(running.model, RUN_DIR).exists():
                stop(running)
    print("\nstopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "demo"):
        command = commands.add_parser(name)
        command.add_argument("--runtime", choices=RUNTIMES, default="process")
        command.add_argument("--ports", default=DEFAULT_PORTS, help=f"NAME=PORT pairs (default: {DEFAULT_PORTS})")
        command.add_argument("--point", nargs="*", default=[], help="points for the comparison")
    compare_command = commands.add_parser("compare")
    compare_command.add_argument("points", nargs="*", help=f"comma-separated points (default: {DEFAULT_POINT})")
    compare_command.add_argument("--url", action="append", default=[], help="NAME=URL of a version to compare")
    commands.add_parser("status")
    commands.add_parser("stop")
    args = parser.parse_args(argv)
    try:
        environment.read(os.environ, "local")  # a bad setting is refused before anything starts
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
            for running in read_state(RUN_DIR):
                print(f"{running.model:<10} {running.runtime:<8} {running.url:<24} "
                      f"{'up' if running.handle().alive() else 'exited'}")
            return 0
        return stop_all()
    except (RunError, environment.SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Whatever had started was stopped on the way out (see up and demo).
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
