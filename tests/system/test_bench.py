"""`make bench` in its short mode: it runs, and every figure it promises is there. No timing is asserted."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.system, pytest.mark.exclusive]  # wrk saturates both cores


def processes_holding(prefix: str) -> list[int]:
    """Processes with a file open (or its command line) under `prefix`: what a stopped server left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            held = [str(link.readlink()) for link in (entry / "fd").iterdir()]
            held.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
        if any(prefix in item for item in held):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_make_bench_quick_measures_a_function_and_writes_json_and_markdown(tmp_path: Path) -> None:
    results, docs = tmp_path / "results.json", tmp_path / "benchmarks.md"
    targets = ("ours:svc ff-ceiling tutorial-flask cloudrun:svc cloudrun-scaled:svc ours-nolog:svc ours:telco "
               "ours-v2:telco")
    run = subprocess.run(["make", "-s", "bench", f"BENCH_ARGS=--quick --only {targets} --json {results} --docs {docs}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(results.read_text())
    by_name = {result["target"]: result for result in report["results"]}
    assert set(by_name) == set(targets.split())
    svc = by_name["ours:svc"]
    assert svc["target"] == "ours:svc"
    assert svc["cold_start_s"] > 0 and svc["rss_mb"] > 0
    assert set(svc["single"]) == {"1", "8", "32"}
    assert all(point["rps"] > 0 and point["p99_ms"] >= point["p50_ms"] > 0 for point in svc["single"].values())
    assert set(svc["batch_rows_per_s"]) == {"1000", "10000"} and min(svc["batch_rows_per_s"].values()) > 0
    assert report["machine"]["cores"]
    assert all(by_name[name]["single"]["8"]["rps"] > 0 for name in ("ff-ceiling", "tutorial-flask"))
    assert "| ours:svc |" in docs.read_text() and "| ours:svc |" in run.stdout
    # The targets as ratios of figures from this same run.
    assert "ours:svc single req/s @8 = " in run.stdout and "of the framework ceiling (target >= 0.9)" in run.stdout
    assert "x the tutorial app (target >= 1.9)" in run.stdout and "cold start" in run.stdout
    # The local Cloud Run's data plane, against the same function called directly.
    assert by_name["cloudrun:svc"]["single"]["8"]["rps"] > 0 and by_name["cloudrun:svc"]["rss_mb"] > 0
    assert "prediction logging on: " in run.stdout and "of the single req/s @8 with it off" in run.stdout
    assert "target >= 0.95" in run.stdout and "cold start" in run.stdout and "(target <= 0.30 s)" in run.stdout
    assert "cloudrun:svc single req/s @8 = " in run.stdout
    assert "of ours:svc called directly (target >= 0.93)" in run.stdout
    # Scaled out (concurrency 2, 4 instances): its throughput against the direct call, and memory per instance.
    assert "cloudrun-scaled:svc single req/s @32 = " in run.stdout and "(target >= 0.9)" in run.stdout
    assert re.search(r"memory per instance: \d+ MB resident", run.stdout), run.stdout
    assert processes_holding(str(ROOT / ".bench" / "cloudrun-")) == []  # the local Cloud Run left nothing running
    # An imported Pipeline (the telco example, made by `make import-model`'s command): V1 and V2 measured, and its
    # one-row prediction in the handler against the Pipeline's own predict in-process.
    assert by_name["ours:telco"]["single"]["8"]["rps"] > 0 and by_name["ours-v2:telco"]["single"]["8"]["rps"] > 0
    assert set(by_name["ours:telco"]["predict_one_ms"]) == {"estimator", "handler", "request", "overhead"}
    assert "telco: the handler predicts one row in " in run.stdout and "target <= 1.1" in run.stdout
    # And a whole request's cost beyond the estimator's own predict, timed inside the same requests.
    telco = by_name["ours:telco"]["predict_one_ms"]
    assert 0 < telco["overhead"] < telco["request"]
    assert "telco: a whole GET / costs " in run.stdout and "outside the estimator's own predict (target <= 0.3 ms)" \
        in run.stdout
