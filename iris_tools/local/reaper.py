"""Servers outlive whoever started them (each leads a process group of its own, so that a control
plane can restart or another command can adopt them). When their owner is interrupted before it
stops them (a test run killed by Ctrl-C, SIGTERM or a CI timeout) nothing else would. The reaper:

    IRIS_REAPER_DIR=<dir>      every server started with this set (in any process that inherits it:
                               the local Cloud Run's control plane, its Envoy and revisions, `make up`)
                               writes a record there, and removes it when it is stopped;
    python -m iris_tools.local.reaper --owner PID --dir DIR
                               waits until process PID is gone (or a zombie), then stops every recorded server that
                               is still the one recorded, and removes DIR.

A record names its server exactly: a process group by its leader's pid and start time (a pid the
kernel gave to someone else since is never signalled), a container by its name. Nothing is found
by a name match.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from iris_tools.environment import value
from iris_tools.local.processes import group_members, running, start_time

ENVIRONMENT = "IRIS_REAPER_DIR"
POLL_S = 0.5


def _directory() -> Path | None:
    return value(ENVIRONMENT)


def _path(directory: Path, record: dict[str, Any]) -> Path:
    key = f"process-{record['pgid']}" if record.get("kind") != "docker" else f"docker-{record['name']}"
    return directory / f"{key}.json"


def register(record: dict[str, Any]) -> None:
    """Note a server just started (its `Server.record()`), when a reaper watches this process tree."""
    directory = _directory()
    if directory is None:
        return
    entry = dict(record)
    if entry.get("kind") != "docker":
        entry["start_time"] = start_time(int(entry["pgid"]))
    directory.mkdir(parents=True, exist_ok=True)
    path = _path(directory, entry)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(entry))
    os.replace(temporary, path)


def unregister(record: dict[str, Any]) -> None:
    directory = _directory()
    if directory is not None:
        _path(directory, record).unlink(missing_ok=True)


def _group_is_ours(entry: dict[str, Any]) -> bool:
    pgid = int(entry["pgid"])
    leader_start = start_time(pgid)
    if leader_start is not None:
        return leader_start == entry.get("start_time")
    # The leader is gone. While any process is in its group, the kernel does not give its pid to a
    # new process, so the members left are the ones it started.
    return bool(group_members(pgid))


def reap(directory: Path) -> list[str]:
    """Stop every server recorded in `directory` that is still the one recorded; what was stopped."""
    stopped: list[str] = []
    for _ in range(5):  # a control plane may start a revision while it is being stopped: look again
        entries = []
        for path in sorted(directory.glob("*.json")):
            try:
                entries.append((path, json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
        if not entries:
            break
        for path, entry in entries:
            if entry.get("kind") == "docker":
                result = subprocess.run([entry.get("docker") or "docker", "rm", "-f", entry["name"]],
                                        capture_output=True, text=True, timeout=60)
                if result.returncode == 0:
                    stopped.append(f"container {entry['name']}")
            elif _group_is_ours(entry):
                try:
                    os.killpg(int(entry["pgid"]), signal.SIGKILL)
                    stopped.append(f"process group {entry['pgid']} (port {entry.get('port')})")
                except ProcessLookupError:
                    pass
            path.unlink(missing_ok=True)
        for _, entry in entries:
            deadline = time.monotonic() + 5
            while entry.get("kind") != "docker" and group_members(int(entry["pgid"])) and time.monotonic() < deadline:
                time.sleep(0.02)
    return stopped


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def watch(owner: int, directory: Path) -> int:
    started = start_time(owner)
    while running(owner, started):
        time.sleep(POLL_S)
    stopped = reap(directory)
    if stopped:
        print(f"reaper: process {owner} ended and left {len(stopped)} server(s) running; stopped "
              + ", ".join(stopped), file=sys.stderr, flush=True)
    remove(directory)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.local.reaper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owner", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    return watch(args.owner, args.dir)


if __name__ == "__main__":
    sys.exit(main())
