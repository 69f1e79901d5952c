"""`make bench-outcomes`: what judging by answers costs at production traffic, on this machine.

    python -m iris_tools.bench.outcome_costs [--rows 1000000] [--json PATH] [--docs PATH]

Writes, under a temporary RUN_DIR, the logs a local Cloud Run's two revisions would hold after ROWS labelled
predictions (every answer one row with its id, as the tutorial's GET; labels posted back 100 to a /feedback line),
the lines made by the handler's own prediction log (shared/prediction_log.py) and varied. Then measures:

  make outcomes, cold    `python -m iris_tools.quality outcomes` as `make outcomes` runs it, with no store yet: it
                         takes in every line and runs the query (the issue's bound: 10 s for a million)
  a look, warm           the rollout's look during a step: the store holds everything, a step's new lines (300
                         answers/s for 10 s, and their labels) arrive, and the look takes them in and judges the
                         step's window (the bound: 1 s with a million lines already logged)
  the query alone        the aggregate query over the whole million, nothing new to take in

Figures from one run; no timing is asserted anywhere (tests/system/test_bench.py runs it small).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iris_tools.environment import ROOT
from iris_tools.google.targets import directories
from iris_tools.quality.local_store import LocalStore

T0 = 1_796_400_000.0
RATE = 300.0  # answers/s: the look's step
STEP_S = 10.0
REVISIONS = ("iris-00001-bench", "iris-00002-bench")
CLASSES = ("setosa", "versicolor", "virginica")


def template(revision: str) -> str:
    """One prediction line exactly as the handler writes it (its own PredictionLog, a GET through Flask)."""
    import io

    import flask

    from shared.prediction_log import PredictionLog
    from shared.request_id import RequestId

    out = io.StringIO()
    log = PredictionLog("svc", revision, 1.0, 100, stream=out, service="iris")
    app = flask.Flask("bench")
    with app.test_request_context("/?length=5.8&width=3.4"):
        log.begin()
        log.observe(((5.8, 3.4),), ("versicolor",))
        log.end(flask.request.environ, 200, RequestId("request", None, "ID"))  # the answer id, replaced per line
    return out.getvalue()


def stamp(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e6):06d}Z"


def write_lines(log_dir: Path, start: int, count: int, seed: int) -> None:
    """Answers start..start+count-1 at RATE/s from T0, alternating revisions, and their labels 2 s later."""
    rng = random.Random(seed)
    templates = {revision: template(revision) for revision in REVISIONS}
    time_at = templates[REVISIONS[0]].index('"time":"') + 8
    log_dir.mkdir(parents=True, exist_ok=True)
    files = {revision: open(log_dir / f"{revision}.log", "a") for revision in REVISIONS}
    try:
        pending: dict[str, list[str]] = {revision: [] for revision in REVISIONS}
        for n in range(start, start + count):
            revision = REVISIONS[n % 2]
            at = T0 + n / RATE
            answer = CLASSES[rng.randrange(3)]
            line = templates[revision]
            line = (line[:time_at] + stamp(at) + line[time_at + 27:]).replace('"ID"', f'"a{n}"', 1) \
                .replace('"predictions":["versicolor"]', f'"predictions":["{answer}"]')
            files[revision].write(line)
            pending[revision].append(f'{{"id":"a{n}","label":"{CLASSES[rng.randrange(3)]}"}}')
            if len(pending[revision]) == 100 or n == start + count - 1:
                files[revision].write(
                    f'{{"time":"{stamp(at + 2.0)}","severity":"INFO","message":"feedback svc: 100 label(s)",'
                    f'"kind":"feedback","model":"svc","revision":"{revision}","service":"iris",'
                    f'"request_id":"f{n}","count":{len(pending[revision])},"labels":[{",".join(pending[revision])}]}}\n')
                pending[revision] = []
    finally:
        for handle in files.values():
            handle.close()


def run(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="iris-bench-outcomes-") as temporary:
        run_dir = Path(temporary)
        from iris_tools.cloudrun.__main__ import write_gcloud_config

        write_gcloud_config(directories(run_dir)[1], "iris-local", "us-central1", 9)
        log_dir = directories(run_dir)[0] / "logs"
        write_lines(log_dir, 0, rows, seed=1)
        logged = sum(path.stat().st_size for path in log_dir.iterdir())
        env = {**os.environ, "TARGET": "local", "RUN_DIR": str(run_dir), "OUTCOME_FRESHNESS": "3650d"}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "iris_tools.quality", "outcomes"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        cold = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"make outcomes failed: {result.stderr.strip()}")
        report = json.loads((run_dir / "report" / "outcomes.json").read_text())
        counted = sum(r["predictions"] for r in report["revisions"].values())
        labelled = sum(r["labelled"] for r in report["revisions"].values())
        if (counted, labelled) != (rows, rows):
            raise SystemExit(f"make outcomes counted {counted} predictions and {labelled} labels of {rows}")
        store = LocalStore(log_dir, run_dir / "outcomes")
        started = time.perf_counter()
        store.outcomes("iris", T0, T0 + rows / RATE + 10)
        query_only = time.perf_counter() - started
        step = int(RATE * STEP_S)
        write_lines(log_dir, rows, step, seed=2)
        window = (T0 + (rows - 0.5) / RATE, T0 + (rows + step) / RATE)  # half an answer early: stamps are truncated
        started = time.perf_counter()
        look = store.outcomes("iris", *window)
        warm = time.perf_counter() - started
        if sum(o.predictions for o in look.revisions.values()) != step:
            raise SystemExit("the look did not count the step's answers")
        return {"rows": rows, "logged_mb": round(logged / 1e6, 1), "outcomes_cold_s": round(cold, 3),
                "look_warm_s": round(warm, 3), "step_answers": step, "query_only_s": round(query_only, 3)}


def markdown(figures: dict[str, float]) -> str:
    return "\n".join([
        "# What judging by answers costs", "",
        f"Measured by `make bench-outcomes` (iris_tools/bench/outcome_costs.py) on this machine, one run: "
        f"{figures['rows']:,} labelled predictions in two revisions' logs ({figures['logged_mb']:g} MB of lines as "
        f"the handler writes them).", "",
        "| what | seconds | bound |", "|---|---|---|",
        f"| `make outcomes`, no store yet: every line taken in, then the query | {figures['outcomes_cold_s']:.2f} | 10 |",
        f"| a rollout's look: a step's {figures['step_answers']:,} new answers and labels taken in, the step's window "
        f"judged | {figures['look_warm_s']:.3f} | 1 |",
        f"| the query alone over all {figures['rows']:,} | {figures['query_only_s']:.3f} | - |", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.bench.outcome_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "outcomes.json")
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args(argv)
    figures = run(args.rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1))
    text = markdown(figures)
    if args.docs:
        args.docs.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
