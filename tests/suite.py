"""`make test`: the suite in two phases, then the 30 slowest tests of both and one closing count.

    python tests/suite.py [pytest arguments...]       (TEST_WORKERS: pytest-xdist workers, default 3; 0: one process)

1. Every test but the `exclusive` ones, on TEST_WORKERS workers, each test file whole in one worker
   (--dist loadfile: a file's local Cloud Run and module fixtures are made once).
2. The `exclusive` tests, one at a time: those that saturate the machine (wrk soaks, the benchmark) or judge
   timing that a busy machine would move (the autoscaler's windows). Run beside others, they made each other late.

Each phase writes a JUnit report; the 30 slowest tests of both are printed last, then "N passed, N failed, N
skipped". The exit status is pytest's: 0 when every phase passed (a phase that selects no test is no failure
when another ran tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_TESTS = 5  # pytest's exit status when nothing was selected
SLOWEST = 30


def phases(workers: str) -> list[tuple[str, list[str]]]:
    if workers in ("", "0"):
        return [("all", [])]
    return [("parallel", ["-n", workers, "--dist", "loadfile", "-m", "not exclusive"]),
            ("exclusive", ["-p", "no:xdist", "-m", "exclusive"])]


def read_report(path: Path) -> tuple[list[tuple[float, str]], dict[str, int]]:
    """(seconds, test id) of every test case, and the counts of passed, failed and skipped."""
    if not path.exists():
        return [], {}
    cases, counts = [], {"passed": 0, "failed": 0, "skipped": 0}
    for case in ElementTree.parse(path).iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        cases.append((float(case.get("time") or 0), name))
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        counts[outcome] += 1
    return cases, counts


def main(arguments: list[str]) -> int:
    workers = os.environ.get("TEST_WORKERS", "3")
    statuses: list[int] = []
    cases: list[tuple[float, str]] = []
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    with tempfile.TemporaryDirectory(prefix="iris-suite-") as reports:
        for name, options in phases(workers):
            report = Path(reports) / f"{name}.xml"
            print(f"\n===== make test, phase {name}: pytest {' '.join(options + arguments)}", flush=True)
            try:
                statuses.append(subprocess.call([sys.executable, "-m", "pytest", *options, f"--junitxml={report}",
                                                 *arguments], cwd=ROOT))
            except KeyboardInterrupt:
                return 130
            found, counts = read_report(report)
            cases += found
            for key, value in counts.items():
                totals[key] += value
    print(f"\n===== the {SLOWEST} slowest tests of the run")
    for seconds, name in sorted(cases, reverse=True)[:SLOWEST]:
        print(f"{seconds:8.2f}s  {name}")
    print(f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    ran = [status for status in statuses if status != NO_TESTS]
    if not ran:
        return NO_TESTS
    return next((status for status in ran if status != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
