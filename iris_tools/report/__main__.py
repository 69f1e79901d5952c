"""The report: `make report` runs `python -m iris_tools.report`.

    python -m iris_tools.report [--url NAME=URL ...] [--csv PATH] [--out DIR] [--rollout RECORD.json]

By default it compares the versions `make up` started, on the iris data set and a dense grid over
its range; `--url` (URLS= in make) compares any deployments instead; `--csv` adds a user's points
(columns length,width and optionally label). It writes, under DIR (default .run/report):
  compare.json  compare.md  compare.png
and, when a rollout has run (its record in .run/rollout/latest.json, or --rollout), rollout.png.

Versions of a user's own model (`make import-model`) are grouped by the features they take and compared on the rows
of --csv when it has a column per feature (and optionally `label`): compare-<first version's name>.json and .md,
with agreement and accuracy for a classifier, the paired difference and mean absolute error for a regressor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iris_tools.environment import value
from iris_tools.local.comparison import RunError, get_json, parse_urls
from iris_tools.report.compare import compare, markdown
from iris_tools.report.data import CsvError, csv_records, from_csv, grid, iris, iris_columns
from iris_tools.report.plots import compare_png, rollout_png
from iris_tools.report.tabular import compare_rows, fits, markdown_rows, rows_from_csv
from iris_tools.rollout.records import Record, RecordError
from iris_tools.local.commands import running_targets
from iris_tools.local.state import write_atomically
from shared.artifact import Feature


IRIS_FEATURES = ("sepal_length", "sepal_width")


def describe(targets: list[tuple[str, str]]) -> dict[tuple[str, ...], list[tuple[str, str, dict]]]:
    """The versions by the features they take (name order kept): each group is compared on its own."""
    groups: dict[tuple[str, ...], list[tuple[str, str, dict]]] = {}
    for name, url in targets:
        status, metadata = get_json(url.rstrip("/") + "/metadata")
        if status != 200:
            raise RunError(f"{name} at {url}: GET /metadata answered {status}")
        features = tuple(f["name"] for f in metadata["model"]["features"])
        groups.setdefault(features, []).append((name, url.rstrip("/"), metadata))
    return groups


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
    written: list[Path] = []
    try:
        groups = describe(parse_urls(args.url) or running_targets())
        iris_versions = groups.pop(IRIS_FEATURES, [])
        columns = set(csv_records(args.csv)[0]) if args.csv else set()
        used_csv = False
        args.out.mkdir(parents=True, exist_ok=True)
        if len(iris_versions) == 1 and groups:
            print(f"{iris_versions[0][0]}: the only iris version running; a comparison needs two")
        elif iris_versions or not groups:
            with_csv = bool(args.csv) and (not groups or iris_columns(columns) is not None)
            used_csv = with_csv
            written += iris_report(iris_versions, args, with_csv)
        for members in groups.values():
            features = [Feature.from_json(f) for f in members[0][2]["model"]["features"]]
            name = members[0][0]
            if not (args.csv and fits(columns, features)):
                print(f"{', '.join(m[0] for m in members)}: to compare on rows of your own, give CSV= a file with "
                      f"columns {','.join(f.name for f in features)} (and label, to score them)")
                continue
            used_csv = True
            report = compare_rows(name, members, rows_from_csv(args.csv, features, members[0][2]["model"]["task"]),
                                  args.latency_requests)
            write_atomically(args.out / f"compare-{name}.json", json.dumps(report, indent=1))
            write_atomically(args.out / f"compare-{name}.md", markdown_rows(report))
            written += [args.out / f"compare-{name}.json", args.out / f"compare-{name}.md"]
            said(report)
        if args.csv and not used_csv:
            raise CsvError(f"CSV {args.csv}: its columns {sorted(columns)} are the features of none of the versions")
        if args.rollout.exists():
            written.append(rollout_png(Record.read(args.rollout), args.out / "rollout.png"))
    except (RunError, CsvError, RecordError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: a version did not answer: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def iris_report(versions: list[tuple[str, str, dict]], args: argparse.Namespace, with_csv: bool) -> list[Path]:
    """The iris versions on the data set, a dense grid and (`with_csv`) the user's points: compare.json/md/png."""
    data = iris()
    datasets = [data, grid(data.X)]
    if with_csv:
        datasets.append(from_csv(args.csv))
    report = compare([(name, url) for name, url, _ in versions], datasets, args.latency_requests)
    answers = report.pop("_answers")
    write_atomically(args.out / "compare.json", json.dumps(report, indent=1))
    write_atomically(args.out / "compare.md", markdown(report))
    report["_answers"] = answers
    for pair in report["pairs"]:
        print(f"{pair['a']} vs {pair['b']}: {100 * pair['agreement']:.2f}% agree over {pair['n']:,} points "
              + "(" + ", ".join(f"{name} {100 * value:.2f}%" for name, value in pair["by_dataset"].items()) + ")")
    return [args.out / "compare.json", args.out / "compare.md",
            compare_png(report, datasets[1], data, args.out / "compare.png")]


def said(report: dict) -> None:
    for pair in report["pairs"]:
        if "agreement" in pair:
            print(f"{pair['a']} vs {pair['b']}: {100 * pair['agreement']:.2f}% agree over {pair['n']:,} rows")
        else:
            print(f"{pair['a']} vs {pair['b']}: mean absolute difference {pair['mean_absolute_difference']:.6g} "
                  f"over {pair['n']:,} rows")
    for version, figures in report["by_version"].items():
        score = figures.get("accuracy", figures.get("mean_absolute_error"))
        if score is not None:
            print(f"{version}: {'accuracy' if 'accuracy' in figures else 'mean absolute error'} {score:.6g}")


if __name__ == "__main__":
    sys.exit(main())
