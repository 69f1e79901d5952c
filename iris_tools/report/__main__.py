"""The report: `make report` runs `python -m iris_tools.report`.

    python -m iris_tools.report [--url NAME=URL ...] [--csv PATH] [--out DIR] [--rollout RECORD.json]

By default it compares the versions `make up` started, on the iris data set and a dense grid over
its range; `--url` (URLS= in make) compares any deployments instead; `--csv` adds a user's points
(columns length,width and optionally label). It writes, under DIR (default .run/report):
  compare.json  compare.md  compare.png
and, when a rollout has run (its record in .run/rollout/latest.json, or --rollout), rollout.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iris_tools.environment import value
from iris_tools.local.comparison import RunError, parse_urls
from iris_tools.report.compare import compare, markdown
from iris_tools.report.data import CsvError, from_csv, grid, iris
from iris_tools.report.plots import compare_png, rollout_png
from iris_tools.rollout.records import Record, RecordError
from iris_tools.local.commands import running_targets
from iris_tools.local.state import write_atomically


def main(argv: list[str] | None = None) -> int:
    run_dir = value("RUN_DIR")
    parser = argparse.ArgumentParser(prog="python -m iris_tools.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", default=[], help="NAME=URL of a version (repeat)")
    parser.add_argument("--csv", type=Path, default=None, help="a CSV of points to compare on as well")
    parser.add_argument("--out", type=Path, default=run_dir / "report")
    parser.add_argument("--rollout", type=Path, default=run_dir / "rollout" / "latest.json")
    parser.add_argument("--latency-requests", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        targets = parse_urls(args.url) or running_targets()
        data = iris()
        datasets = [data, grid(data.X)]
        if args.csv:
            datasets.append(from_csv(args.csv))
        report = compare(targets, datasets, args.latency_requests)
        args.out.mkdir(parents=True, exist_ok=True)
        answers = report.pop("_answers")
        write_atomically(args.out / "compare.json", json.dumps(report, indent=1))
        write_atomically(args.out / "compare.md", markdown(report))
        report["_answers"] = answers
        written = [args.out / "compare.json", args.out / "compare.md",
                   compare_png(report, datasets[1], data, args.out / "compare.png")]
        if args.rollout.exists():
            written.append(rollout_png(Record.read(args.rollout), args.out / "rollout.png"))
    except (RunError, CsvError, RecordError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: a version did not answer: {exc}", file=sys.stderr)
        return 1
    for pair in report["pairs"]:
        print(f"{pair['a']} vs {pair['b']}: {100 * pair['agreement']:.2f}% agree over {pair['n']:,} points "
              + "(" + ", ".join(f"{name} {100 * value:.2f}%" for name, value in pair["by_dataset"].items()) + ")")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
