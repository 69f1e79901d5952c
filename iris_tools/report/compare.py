"""Two or more versions asked the same questions over HTTP: agreement, disagreements, accuracy, class mix, latency.

    compare(targets, points) -> dict     (what compare.json holds)

Each version is asked through its own HTTP API (POST / batches, within its MAX_BATCH_ROWS), so
the figures are those of the servers that answer users, whatever they run on.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
import urllib.request
from typing import Any

import numpy as np

from iris_tools.local.comparison import RunError, get_json
from iris_tools.report.data import TEST_POINT, Points

LATENCY_REQUESTS = 200


def post_json(url: str, document: Any, timeout: float = 60.0) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def predictions(url: str, X: np.ndarray) -> list[str]:
    status, metadata = get_json(url + "/metadata")
    if status != 200:
        raise RunError(f"{url}/metadata answered {status}")
    limit = int(metadata["limits"]["max_batch_rows"])
    answers: list[str] = []
    for start in range(0, len(X), limit):
        answers += post_json(url + "/", {"instances": X[start:start + limit].tolist()})["predictions"]
    return answers


def latency(url: str, requests: int = LATENCY_REQUESTS, query: str = f"length={TEST_POINT[0]}&width={TEST_POINT[1]}"
            ) -> dict[str, float]:
    """Client-side latency of a GET (the tutorial's, at its test point, unless `query` is given), one at a time."""
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/?{query}", timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3),
            "requests": requests}


def confusion(a: list[str], b: list[str], classes: list[str]) -> list[list[int]]:
    index = {name: i for i, name in enumerate(classes)}
    table = [[0] * len(classes) for _ in classes]
    for x, y in zip(a, b):
        table[index[x]][index[y]] += 1
    return table


def compare(targets: list[tuple[str, str]], datasets: list[Points], latency_requests: int = LATENCY_REQUESTS
            ) -> dict[str, Any]:
    if len(targets) < 2:
        raise RunError("a comparison needs two versions or more: start them with `make up`, or pass URLS")
    versions = []
    for name, url in targets:
        status, metadata = get_json(url.rstrip("/") + "/metadata")
        if status != 200:
            raise RunError(f"{name} at {url}: GET /metadata answered {status}")
        versions.append({"name": name, "url": url.rstrip("/"), "algorithm": metadata["model"]["algorithm"],
                         "revision": metadata["serving"]["revision"],
                         "class_names": metadata["model"]["class_names"]})
    classes = versions[0]["class_names"]
    report: dict[str, Any] = {"versions": versions, "classes": classes, "datasets": {}, "pairs": []}
    answers: dict[str, dict[str, list[str]]] = {}
    for points in datasets:
        answers[points.name] = {v["name"]: predictions(v["url"], points.X) for v in versions}
        entry: dict[str, Any] = {"n": len(points.X), "class_mix": {}, "accuracy": {}}
        for version in versions:
            said = answers[points.name][version["name"]]
            entry["class_mix"][version["name"]] = {c: said.count(c) for c in classes}
            if points.labels is not None:
                entry["accuracy"][version["name"]] = round(
                    sum(p == t for p, t in zip(said, points.labels)) / len(said), 4)
        entry["pairs"] = []
        for a, b in itertools.combinations(versions, 2):
            x, y = answers[points.name][a["name"]], answers[points.name][b["name"]]
            differ = [i for i, (p, q) in enumerate(zip(x, y)) if p != q]
            entry["pairs"].append({
                "a": a["name"], "b": b["name"], "n": len(x), "agreement": round(1 - len(differ) / len(x), 4),
                "confusion": confusion(x, y, classes),
                "disagreements": [{"point": points.X[i].round(4).tolist(), a["name"]: x[i], b["name"]: y[i],
                                   **({"label": points.labels[i]} if points.labels else {})}
                                  for i in differ[:200] if points.name != "grid"],
            })
        report["datasets"][points.name] = entry
    for a, b in itertools.combinations(versions, 2):
        n = sum(e["n"] for e in report["datasets"].values())
        agree = sum(p["agreement"] * p["n"] for e in report["datasets"].values() for p in e["pairs"]
                    if (p["a"], p["b"]) == (a["name"], b["name"]))
        report["pairs"].append({"a": a["name"], "b": b["name"], "n": n, "agreement": round(agree / n, 4),
                                "by_dataset": {name: next(p["agreement"] for p in e["pairs"]
                                                          if (p["a"], p["b"]) == (a["name"], b["name"]))
                                               for name, e in report["datasets"].items()}})
    report["test_point"] = {"point": list(TEST_POINT), **{v["name"]: predictions(v["url"], np.array([TEST_POINT]))[0]
                                                        for v in versions}}
    report["latency"] = {v["name"]: latency(v["url"], latency_requests) for v in versions}
    report["_answers"] = answers  # for the picture; not written to compare.json
    return report


def markdown(report: dict[str, Any]) -> str:
    names = [v["name"] for v in report["versions"]]
    out = ["# Versions compared", ""]
    out += [f"- `{v['name']}` at {v['url']}: {v['algorithm'].rsplit('.', 1)[-1]}, revision {v['revision'] or '-'}"
            for v in report["versions"]]
    point = report["test_point"]
    out += ["", f"At the tutorial's test point {tuple(point['point'])}: "
            + ", ".join(f"`{n}` says {point[n]}" for n in names), "", "## Agreement", "",
            "| a | b | points | agreement | " + " | ".join(report["datasets"]) + " |",
            "|---|---|---|---|" + "---|" * len(report["datasets"])]
    for pair in report["pairs"]:
        out.append(f"| {pair['a']} | {pair['b']} | {pair['n']:,} | {pair['agreement']:.4f} | "
                   + " | ".join(f"{v:.4f}" for v in pair["by_dataset"].values()) + " |")
    for name, entry in report["datasets"].items():
        out += ["", f"## {name} ({entry['n']:,} points)", ""]
        if entry["accuracy"]:
            out.append("Accuracy against the labels: " + ", ".join(f"`{n}` {a:.3f}" for n, a in entry["accuracy"].items()))
            out.append("")
        out += ["Class mix:", "", "| version | " + " | ".join(report["classes"]) + " |",
                "|---|" + "---|" * len(report["classes"])]
        for version, mix in entry["class_mix"].items():
            out.append(f"| {version} | " + " | ".join(str(mix[c]) for c in report["classes"]) + " |")
        for pair in entry["pairs"]:
            out += ["", f"Confusion, rows `{pair['a']}`, columns `{pair['b']}` (agreement {pair['agreement']:.4f}):", "",
                    "| | " + " | ".join(report["classes"]) + " |", "|---|" + "---|" * len(report["classes"])]
            for cls, row in zip(report["classes"], pair["confusion"]):
                out.append(f"| {cls} | " + " | ".join(str(v) for v in row) + " |")
            if pair["disagreements"]:
                out += ["", f"Points where they differ ({len(pair['disagreements'])}):", "",
                        "| length | width | " + f"{pair['a']} | {pair['b']} |" + (" label |" if "label" in pair["disagreements"][0] else ""),
                        "|---|---|---|---|" + ("---|" if "label" in pair["disagreements"][0] else "")]
                for d in pair["disagreements"]:
                    out.append(f"| {d['point'][0]:g} | {d['point'][1]:g} | {d[pair['a']]} | {d[pair['b']]} |"
                               + (f" {d['label']} |" if "label" in d else ""))
    out += ["", "## Latency (client side, the tutorial's GET, one at a time)", "", "| version | p50 ms | p99 ms |",
            "|---|---|---|"]
    for name, figures in report["latency"].items():
        out.append(f"| {name} | {figures['p50_ms']:.3f} | {figures['p99_ms']:.3f} |")
    return "\n".join(out) + "\n"
