"""Not collected on its own: tests/cloudrun/test_interrupted_run.py runs it in a pytest of its own and
interrupts that run while a local Cloud Run it started is serving."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cloudrun.harness import CloudRunUnderTest


def test_serves_until_interrupted(tmp_path: Path) -> None:
    emulator = CloudRunUnderTest(Path(os.environ["INTERRUPTED_RUN_DIR"]))
    emulator.start()
    try:
        emulator.ok("run", "deploy", "iris", "--image", "iris:svc")
        (emulator.run_dir / "serving").write_text("yes")
        time.sleep(600)
    finally:
        if os.environ.get("INTERRUPTED_RUN_NO_TEARDOWN") != "1":
            emulator.stop()
