"""Servers started as the leader of a process group of their own, and stopped as a whole group.

gunicorn (under functions-framework) and MLServer fork workers: stopping only the process
that was started can leave those behind. The local runner and the benchmark both use this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(command: list[str], *, cwd: Path, env: dict[str, str], stdout: int | object = subprocess.DEVNULL
          ) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=True)


def members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name: state, ppid, pgrp, ...
        state, _, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def stop_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the group, give it `grace_s` seconds to finish what it is doing, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
