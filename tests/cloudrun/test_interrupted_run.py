"""A test run interrupted while a local Cloud Run it started is serving leaves no control plane, Envoy
or revision behind: SIGTERM (a CI timeout's first signal) and Ctrl-C end the run through its own
teardown, and SIGKILL (nothing of the run can act) is answered by the reaper that outlives the run
(tests/conftest.py, iris_tools/local/reaper.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iris_tools.local.processes import group_members
from tests.helpers import ROOT


def groups_started(run_dir: Path) -> dict[str, int]:
    """What the interrupted run's local Cloud Run was running: control plane, Envoy, each revision."""
    state_dir = run_dir / "cloudrun"
    state = json.loads((state_dir / "state.json").read_text())
    groups = {"control plane": json.loads((state_dir / "controlplane.json").read_text())["pgid"],
              "envoy": state["envoy"]["pgid"]}
    groups.update({name: revision["instances"][0]["pgid"] for name, revision in state["revisions"].items()})
    return groups


@pytest.mark.parametrize("signum, teardown", [(signal.SIGTERM, True), (signal.SIGINT, True),
                                              (signal.SIGKILL, False)], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_an_interrupted_run_leaves_nothing_running(tmp_path: Path, signum: int, teardown: bool) -> None:
    """Broken on purpose, it fails: without the reaper's watcher, the SIGKILLed run left the control
    plane, Envoy and the revision running; without the SIGTERM handler, the SIGTERMed run skipped its
    teardown (the reaper, not the run, had to stop them)."""
    run_dir = tmp_path / "run"
    environment = {**os.environ, "INTERRUPTED_RUN_DIR": str(run_dir),
                   "INTERRUPTED_RUN_NO_TEARDOWN": "0" if teardown else "1"}
    # A run started in the background by a non-interactive shell inherits SIGINT ignored, and Python then never
    # turns Ctrl-C into KeyboardInterrupt: the interrupted run gets SIGINT's default back, as a terminal has it.
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/cloudrun/interrupted_run.py"], cwd=ROOT, env=environment,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "serving").exists():
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the interrupted run never served"
            time.sleep(0.2)
        groups = groups_started(run_dir)
        assert all(group_members(pgid) for pgid in groups.values()), groups
        os.kill(run.pid, signum)
        output = run.communicate(timeout=120)[0]
        deadline = time.monotonic() + 30
        while any(group_members(pgid) for pgid in groups.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name: pgid for name, pgid in groups.items() if group_members(pgid)}
        assert left == {}, f"left running after {signal.Signals(signum).name}: {left}\n{output[-3000:]}"
        reaped = "reaper: process" in output
        # Teardown stopped what it started (the reaper found nothing), or, killed, the reaper did.
        assert reaped == (not teardown), output[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
