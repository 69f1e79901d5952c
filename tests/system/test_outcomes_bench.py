"""`make bench-outcomes` run small: it measures `make outcomes` cold and a rollout's look warm, and the counts it
checks (every prediction and label of the run counted by `make outcomes`, every answer of the step by the look) hold.
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.system


def test_the_outcomes_benchmark_runs_and_counts_every_answer(tmp_path: Path) -> None:
    results, docs = tmp_path / "outcomes.json", tmp_path / "outcomes.md"
    run = subprocess.run(["make", "-s", "bench-outcomes", f"BENCH_ARGS=--rows 6000 --json {results} --docs {docs}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(results.read_text())
    assert figures["rows"] == 6000 and figures["step_answers"] == 3000
    assert figures["outcomes_cold_s"] > 0 and figures["look_warm_s"] > 0 and figures["logged_mb"] > 0
    assert "| `make outcomes`, no store yet" in docs.read_text() and "6,000 labelled predictions" in run.stdout
