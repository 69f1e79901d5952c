"""`make report`: the versions compared over HTTP, checked against the same models called in-process; the
pictures checked as drawn (size, not blank, the expected colours)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from iris_tools.report.data import grid, iris
from iris_tools.rollout.records import Record
from iris_tools.report.plots import CLASS_COLOURS, DISAGREE_COLOUR, REVISION_COLOURS, rollout_png
from tests.helpers import CLASS_NAMES, ROOT, free_port
from tests.system.servers import function_server

pytestmark = pytest.mark.system


def colour_share(png: Path, hex_colour: str, tolerance: float = 0.08) -> float:
    """The fraction of the picture's pixels within `tolerance` of `hex_colour` (or of it blended at 45-60% on white)."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    target = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    shades = [target] + [alpha * target + (1 - alpha) for alpha in (0.45, 0.55, 0.6)]
    near = np.zeros(pixels.shape[:2], dtype=bool)
    for shade in shades:
        near |= np.abs(pixels - shade).max(axis=-1) < tolerance
    return float(near.mean())


def assert_drawn(png: Path, min_size: tuple[int, int]) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1]
    assert pixels[..., :3].std() > 0.05, "the picture is blank"


@pytest.fixture(scope="module")
def versions():
    with function_server(ROOT / "functions" / "svc" / "main.py", free_port()) as svc, \
            function_server(ROOT / "functions" / "lin_svc" / "main.py", free_port()) as lin_svc:
        yield {"svc": svc, "lin_svc": lin_svc}


def run_report(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iris_tools.report", "--out", str(tmp_path / "report"),
                           "--rollout", str(tmp_path / "no-rollout.json"), "--latency-requests", "20", *arguments],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_report_compares_versions_as_the_models_in_process_do(versions, tmp_path: Path) -> None:
    points = tmp_path / "points.csv"
    points.write_text("length,width,label\n5.8,3.4,versicolor\n7.0,3.0,virginica\n5.0,3.5,setosa\n")
    result = run_report(tmp_path, *(f"--url={name}={url}" for name, url in versions.items()), "--csv", str(points))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "compare.json").read_text())
    data = iris()
    datasets = {"iris": data.X, "grid": grid(data.X).X, "points.csv": np.array([[5.8, 3.4], [7.0, 3.0], [5.0, 3.5]])}
    models = {name: joblib.load(ROOT / "functions" / name / "model.joblib") for name in versions}
    answers = {name: {d: [CLASS_NAMES[i] for i in model.predict(X)] for d, X in datasets.items()}
               for name, model in models.items()}
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"]) == ("svc", "lin_svc")
    total = agree = 0
    for dataset, X in datasets.items():
        same = sum(a == b for a, b in zip(answers["svc"][dataset], answers["lin_svc"][dataset]))
        assert pair["by_dataset"][dataset] == round(same / len(X), 4)
        total, agree = total + len(X), agree + same
        entry = report["datasets"][dataset]
        for name in versions:
            assert entry["class_mix"][name] == {c: answers[name][dataset].count(c) for c in CLASS_NAMES}
    assert pair["n"] == total and pair["agreement"] == pytest.approx(agree / total, abs=1e-4)
    iris_entry = report["datasets"]["iris"]
    for name in versions:
        expected = sum(p == t for p, t in zip(answers[name]["iris"], data.labels)) / 150
        assert iris_entry["accuracy"][name] == round(expected, 4)
    csv_pair = report["datasets"]["points.csv"]["pairs"][0]
    assert csv_pair["disagreements"] == [{"point": [5.8, 3.4], "svc": "versicolor", "lin_svc": "setosa",
                                          "label": "versicolor"}]
    assert report["test_point"] == {"point": [5.8, 3.4], "svc": "versicolor", "lin_svc": "setosa"}
    assert set(report["latency"]) == set(versions) and all(v["p99_ms"] >= v["p50_ms"] > 0
                                                           for v in report["latency"].values())
    markdown = (tmp_path / "report" / "compare.md").read_text()
    assert "`svc` says versicolor, `lin_svc` says setosa" in markdown and "| 5.8 | 3.4 | versicolor | setosa |" in markdown
    png = tmp_path / "report" / "compare.png"
    assert_drawn(png, (900, 400))
    for colour in (*CLASS_COLOURS, DISAGREE_COLOUR):
        assert colour_share(png, colour) > 0.005, f"no {colour} in the picture"
    assert f"wrote {png}" in result.stdout and "svc vs lin_svc: " in result.stdout


def test_a_csv_without_the_columns_is_refused_clearly(versions, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = run_report(tmp_path, *(f"--url={name}={url}" for name, url in versions.items()), "--csv", str(bad))
    assert result.returncode == 1 and "needs columns length,width" in result.stderr


def test_one_version_is_not_a_comparison(versions, tmp_path: Path) -> None:
    result = run_report(tmp_path, f"--url=svc={versions['svc']}")
    assert result.returncode == 1 and "needs two versions or more" in result.stderr


def test_the_rollout_picture_marks_every_step_and_the_decision(tmp_path: Path) -> None:
    start = 1000.0
    samples, steps = [], []
    for number, percent in enumerate((5, 50)):
        begin = start + 10 * number
        steps.append({"percent": percent, "started": begin, "ended": begin + 8, "verdict": "promote" if number == 0
                      else "rollback", "reasons": [], "candidate": {}, "stable": {}})
        for second in range(1, 8):
            candidate = {"requests": 10 * percent * second // 10, "errors": (second if number else 0), "p50_ms": 1.0,
                         "p99_ms": 2.0 + 20 * number}
            stable = {"requests": 10 * (100 - percent) * second // 10, "errors": 0, "p50_ms": 1.0, "p99_ms": 2.0}
            samples.append({"at": begin + second, "percent": percent, "window": [begin, begin + second],
                            "candidate": candidate, "stable": stable})
    record = {"id": "r1", "service": "iris", "target": "local", "candidate": "iris-00002-new",
              "stable": "iris-00001-old", "plan": [5, 50, 100], "started": start, "ended": start + 20, "steps": steps,
              "samples": samples, "decision": "rolled back"}
    png = rollout_png(Record.from_json(record), tmp_path / "rollout.png")
    assert_drawn(png, (900, 800))
    for colour in REVISION_COLOURS[:2]:
        assert colour_share(png, colour, tolerance=0.05) > 0.001
    assert colour_share(png, "#d73027", tolerance=0.05) > 0  # the rollback, marked in red


def test_a_rollout_judged_on_its_answers_gets_an_accuracy_panel(tmp_path: Path) -> None:
    """Broken on purpose (the quality of steps ignored): the picture had 4 panels, 950 pixels high."""
    quality = {"decision": "promote", "candidate": {"labelled": 300, "correct": 240, "accuracy": 0.8},
               "stable": {"labelled": 310, "correct": 254, "accuracy": 0.819}}
    steps = [{"percent": 50, "started": 1001.0, "ended": 1009.0, "verdict": "promote", "reasons": [],
              "candidate": {}, "stable": {}, "quality": quality}]
    record = {"id": "r1", "service": "iris", "target": "local", "candidate": "iris-00002-new",
              "stable": "iris-00001-old", "plan": [50, 100], "started": 1000.0, "steps": steps, "samples": [],
              "decision": "promoted"}
    png = rollout_png(Record.from_json(record), tmp_path / "rollout.png")
    assert_drawn(png, (900, 1100))


def test_a_rollout_rolled_back_by_the_paired_check_says_so_with_no_step(tmp_path: Path) -> None:
    """Before any user moved: the picture names the paired check and its figures, in the rollback's red."""
    paired = {"decision": "rollback", "task": "classifier", "n": 300, "reasons": ["..."], "stable_accuracy": 0.81,
              "candidate_accuracy": 0.34}
    record = {"id": "r1", "service": "iris", "target": "local", "candidate": "iris-00002-new",
              "stable": "iris-00001-old", "plan": [50, 100], "started": 1000.0, "ended": 1004.0, "steps": [],
              "samples": [], "decision": "rolled back", "paired": paired}
    png = rollout_png(Record.from_json(record), tmp_path / "rollout.png")
    assert_drawn(png, (900, 800))
    assert colour_share(png, "#d73027", tolerance=0.05) > 0.0005
    if os.environ.get("REPORT_PICTURES"):
        shutil.copy(png, Path(os.environ["REPORT_PICTURES"]) / "rollout-paired.png")
