"""An instance's stdout and stderr into its revision's log, rotated by size: what Cloud Run's logging agent does
for a container, here for a process.

    python -m iris_tools.cloudrun.log_shipper LOG MAX_BYTES

The local Cloud Run starts one per instance, reading the instance's output through a pipe. It writes whole lines to
LOG (`$RUN_DIR/cloudrun/logs/<revision>.log`), which every instance of the revision shares: each write, and each
rotation, holds an flock on LOG.lock, and a shipper whose file was rotated away opens the new one before it writes.
When LOG reaches MAX_BYTES (LOG_MAX_MB) it is renamed LOG.<n> (n one more than the newest) and a new LOG begins. A
renamed segment is never written again and never deleted here: the outcome store deletes the segments it has read
(quality/local_store.py), so rotation loses no line a look has not read.

It ends when the instance has closed its output (it has exited, or been stopped), after writing what was left. It
ignores SIGTERM and SIGINT so a stop sent to a whole terminal group never cuts it off before that.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path

CHUNK = 1 << 16


def segments(log: Path) -> list[tuple[int, Path]]:
    """LOG's rotated segments, oldest first: (n, LOG.<n>)."""
    found = []
    for path in log.parent.glob(log.name + ".*"):
        suffix = path.name[len(log.name) + 1:]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


class Shipper:
    def __init__(self, log: Path, max_bytes: int) -> None:
        self.log = log
        self.max_bytes = max_bytes
        self.lock = open(f"{log}.lock", "a")
        self.out = open(log, "ab")

    def write(self, data: bytes) -> None:
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            try:
                current = os.stat(self.log)
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != os.fstat(self.out.fileno()).st_ino:
                self.out.close()  # rotated by another instance's shipper: write to the new file
                self.out = open(self.log, "ab")
            self.out.write(data)
            self.out.flush()
            if self.out.tell() >= self.max_bytes:
                taken = segments(self.log)
                self.log.rename(self.log.with_name(f"{self.log.name}.{(taken[-1][0] if taken else 0) + 1}"))
                self.out.close()
                self.out = open(self.log, "ab")
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)

    def run(self, source: int) -> None:
        pending = b""
        while True:
            data = os.read(source, CHUNK)
            if not data:
                break
            pending += data
            end = pending.rfind(b"\n") + 1
            if end:
                self.write(pending[:end])
                pending = pending[end:]
        if pending:
            self.write(pending + b"\n")


def main(argv: list[str]) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    log, max_bytes = Path(argv[0]), int(argv[1])
    log.parent.mkdir(parents=True, exist_ok=True)
    Shipper(log, max_bytes).run(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
