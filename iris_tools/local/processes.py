"""What /proc says about a process group: its live members, and a process's start time (its identity)."""

from __future__ import annotations

import os
from pathlib import Path


def _fields(stat: str) -> list[str]:
    # After the command name (which may hold spaces and parentheses): state, ppid, pgrp, ...
    return stat.rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _, group = _fields(stat)[:3]
        if int(group) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def _stat(pid: int) -> list[str] | None:
    try:
        return _fields(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def age_s(pid: int) -> float:
    """How long process `pid` has run, in seconds (0 where /proc cannot say: no Linux, or the process is gone)."""
    started = start_time(pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK")) if started is not None else 0.0


def running(pid: int, started: int | None) -> bool:
    """Whether process `pid` that started at `started` (start_time) still runs: not gone, not a zombie
    waiting for its parent, and not another process that the kernel gave the pid to since."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and (started is None or int(fields[19]) == started)
