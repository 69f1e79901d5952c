"""Versions of a user's own model (any features, a classifier or a regressor) asked the same rows over HTTP.

    rows_from_csv(path, features, task) -> Rows
    compare_rows(name, members, rows) -> dict     (what compare-<name>.json holds)
    markdown_rows(report) -> str

The iris versions have their data set and a grid to be asked about (compare.py); a user's model has only the rows
the user gives (CSV=, columns named by its features, and optionally `label`). Each version is asked through its own
POST / with `instances` as objects of named features, in batches within its MAX_BATCH_ROWS. A classifier's versions
are compared by agreement, confusion and accuracy; a regressor's by the paired difference of their predictions and
by the mean absolute error against the labels.
"""

from __future__ import annotations

import itertools
import math
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.report.compare import confusion, latency, post_json
from iris_tools.report.data import CsvError, csv_records
from shared.artifact import REGRESSOR, STRING, Feature, class_key

LISTED_DIFFERENCES = 200


@dataclass
class Rows:
    name: str
    rows: list[dict[str, float | str]]  # by feature name
    labels: list[str] | list[float] | None = None


def fits(columns: set[str], features: list[Feature]) -> bool:
    """The CSV names every feature (by its name or its alias)."""
    return all(f.name in columns or f.alias in columns for f in features)


def rows_from_csv(path: Path, features: list[Feature], task: str) -> Rows:
    """A CSV with a column per feature (its name or alias) and, optionally, `label` (a class, or a regressor's
    number). A number column's values must be finite numbers; a line that is not is refused naming it."""
    records = csv_records(path)
    columns = set(records[0])
    if not fits(columns, features):
        raise CsvError(f"CSV {path}: needs columns {','.join(f.name for f in features)}; has {sorted(columns)}")
    rows: list[dict[str, float | str]] = []
    labels: list[Any] = []
    for number, record in enumerate(records, start=2):
        row: dict[str, float | str] = {}
        for feature in features:
            raw = record[feature.name if feature.name in record else feature.alias]
            row[feature.name] = raw if feature.type == STRING else _number(raw, path, number, feature.name)
        rows.append(row)
        if "label" in columns:
            labels.append(_number(record["label"], path, number, "label") if task == REGRESSOR else record["label"])
    return Rows(path.name, rows, labels if "label" in columns else None)


def _number(raw: str | None, path: Path, line: int, column: str) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CsvError(f"CSV {path} line {line}: {column} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise CsvError(f"CSV {path} line {line}: {column} {raw!r} is not a finite number")
    return value


def answers(url: str, metadata: dict[str, Any], rows: list[dict[str, float | str]]) -> list:
    limit = int(metadata["limits"]["max_batch_rows"])
    said: list = []
    for start in range(0, len(rows), limit):
        said += post_json(url + "/", {"instances": rows[start:start + limit]})["predictions"]
    # An integer or boolean class by its text, as a CSV's label column has it; a regressor's numbers stay numbers.
    return [class_key(answer) if isinstance(answer, (bool, int)) else answer for answer in said]


def compare_rows(name: str, members: list[tuple[str, str, dict[str, Any]]], rows: Rows,
                 latency_requests: int) -> dict[str, Any]:
    """`members`: (version name, base URL, its /metadata) of versions taking the same features."""
    model = members[0][2]["model"]
    features = [Feature.from_json(f) for f in model["features"]]
    task = model.get("task", "classifier")
    said = {version: answers(url, metadata, rows.rows) for version, url, metadata in members}
    report: dict[str, Any] = {
        "name": name, "task": task, "rows": rows.name, "n": len(rows.rows), "features": [f.name for f in features],
        "versions": [{"name": version, "url": url, "algorithm": metadata["model"]["algorithm"],
                      "revision": metadata["serving"]["revision"]} for version, url, metadata in members],
        "pairs": [], "by_version": {}}
    for version, values in said.items():
        report["by_version"][version] = _regression_figures(values, rows.labels) if task == REGRESSOR else \
            _class_figures(values, rows.labels)
    for (a, x), (b, y) in itertools.combinations(said.items(), 2):
        pair = _regression_pair(x, y) if task == REGRESSOR else _class_pair(x, y)
        differ = [i for i, (p, q) in enumerate(zip(x, y)) if p != q]
        pair.update({"a": a, "b": b, "differences": [
            {"row": rows.rows[i], a: x[i], b: y[i], **({"label": rows.labels[i]} if rows.labels else {})}
            for i in differ[:LISTED_DIFFERENCES]]})
        report["pairs"].append(pair)
    example = urllib.parse.urlencode({f.name: f.example() for f in features})
    report["latency"] = {version: latency(url, latency_requests, query=example) for version, url, _ in members}
    return report


def _class_figures(values: list[str], labels: list | None) -> dict[str, Any]:
    figures: dict[str, Any] = {"class_mix": {c: values.count(c) for c in sorted(set(values))}}
    if labels is not None:
        figures["accuracy"] = round(sum(p == t for p, t in zip(values, labels)) / len(values), 4)
    return figures


def _class_pair(x: list[str], y: list[str]) -> dict[str, Any]:
    classes = sorted(set(x) | set(y))
    same = sum(p == q for p, q in zip(x, y))
    return {"n": len(x), "agreement": round(same / len(x), 4), "classes": classes, "confusion": confusion(x, y, classes)}


def _regression_figures(values: list[float], labels: list | None) -> dict[str, Any]:
    figures: dict[str, Any] = {"mean_prediction": round(sum(values) / len(values), 6)}
    if labels is not None:
        figures["mean_absolute_error"] = round(sum(abs(p - t) for p, t in zip(values, labels)) / len(values), 6)
    return figures


def _regression_pair(x: list[float], y: list[float]) -> dict[str, Any]:
    gaps = [q - p for p, q in zip(x, y)]
    return {"n": len(x), "mean_absolute_difference": round(sum(abs(g) for g in gaps) / len(gaps), 6),
            "max_absolute_difference": round(max(abs(g) for g in gaps), 6),
            "mean_difference": round(sum(gaps) / len(gaps), 6)}


def markdown_rows(report: dict[str, Any]) -> str:
    regression = report["task"] == REGRESSOR
    out = [f"# Versions of `{report['name']}` compared on {report['rows']} ({report['n']:,} rows)", "",
           f"A {report['task']} of {len(report['features'])} features: {', '.join(report['features'])}.", ""]
    out += [f"- `{v['name']}` at {v['url']}: {v['algorithm'].rsplit('.', 1)[-1]}, revision {v['revision'] or '-'}"
            for v in report["versions"]]
    if regression:
        out += ["", "| version | mean prediction | mean absolute error |", "|---|---|---|"]
        out += [f"| {name} | {f['mean_prediction']:.6g} | {_shown(f.get('mean_absolute_error'))} |"
                for name, f in report["by_version"].items()]
    else:
        out += ["", "| version | accuracy | class mix |", "|---|---|---|"]
        out += [f"| {name} | {_shown(f.get('accuracy'))} | "
                + ", ".join(f"{c} {n}" for c, n in f["class_mix"].items()) + " |"
                for name, f in report["by_version"].items()]
    for pair in report["pairs"]:
        if regression:
            out += ["", f"`{pair['a']}` and `{pair['b']}`: mean absolute difference {pair['mean_absolute_difference']:.6g}, "
                        f"largest {pair['max_absolute_difference']:.6g}, mean of `{pair['b']}` minus `{pair['a']}` "
                        f"{pair['mean_difference']:.6g}."]
        else:
            out += ["", f"`{pair['a']}` and `{pair['b']}` agree on {pair['agreement']:.4f} of the rows. "
                        f"Confusion, rows `{pair['a']}`, columns `{pair['b']}`:", "",
                    "| | " + " | ".join(pair["classes"]) + " |", "|---|" + "---|" * len(pair["classes"])]
            out += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(pair["classes"], pair["confusion"])]
        if pair["differences"] and not regression:
            shown = pair["differences"]
            out += ["", f"Rows where they differ ({len(shown)}):", "",
                    "| " + " | ".join(report["features"]) + f" | {pair['a']} | {pair['b']} |"
                    + (" label |" if "label" in shown[0] else ""),
                    "|" + "---|" * (len(report["features"]) + 2 + ("label" in shown[0]))]
            out += ["| " + " | ".join(_shown(d["row"][f]) for f in report["features"]) + f" | {d[pair['a']]} | {d[pair['b']]} |"
                    + (f" {d['label']} |" if "label" in d else "") for d in shown]
    out += ["", "## Latency (client side, a GET of each feature's example value, one at a time)", "",
            "| version | p50 ms | p99 ms |", "|---|---|---|"]
    out += [f"| {name} | {f['p50_ms']:.3f} | {f['p99_ms']:.3f} |" for name, f in report["latency"].items()]
    return "\n".join(out) + "\n"


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
