"""The points a comparison asks about: the iris data set (with its labels), a dense grid, or a user's CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRID_STEPS = (200, 150)
TEST_POINT = (5.8, 3.4)


@dataclass
class Points:
    name: str
    X: np.ndarray  # [N, 2] length, width
    labels: list[str] | None = None  # the true class of each point, where known


def iris() -> Points:
    from sklearn.datasets import load_iris

    data = load_iris()
    return Points("iris", data.data[:, :2].copy(), [str(data.target_names[t]) for t in data.target])


def grid(around: np.ndarray, steps: tuple[int, int] = GRID_STEPS) -> Points:
    """A dense grid over the data's range, half a centimetre beyond it on every side."""
    low, high = around.min(axis=0) - 0.5, around.max(axis=0) + 0.5
    xs, ys = np.linspace(low[0], high[0], steps[0]), np.linspace(low[1], high[1], steps[1])
    mesh = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).round(4)
    return Points("grid", mesh)


class CsvError(Exception):
    pass


def csv_records(path: Path) -> list[dict[str, str]]:
    """A CSV's rows by its header's names; CsvError when it cannot be read or has no rows."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise CsvError(f"CSV {path}: {exc}") from None
    if not rows:
        raise CsvError(f"CSV {path}: no rows")
    return rows


def iris_columns(columns: set[str]) -> tuple[str, str] | None:
    """The columns that hold the iris features: length,width or sepal_length,sepal_width (None: neither)."""
    return next(((a, b) for a, b in (("length", "width"), ("sepal_length", "sepal_width")) if {a, b} <= columns),
                None)


def from_csv(path: Path) -> Points:
    """A CSV with columns length and width (or sepal_length, sepal_width) and, optionally, label."""
    rows = csv_records(path)
    columns = set(rows[0])
    names = iris_columns(columns)
    if names is None:
        raise CsvError(f"CSV {path}: needs columns length,width (or sepal_length,sepal_width); has {sorted(columns)}")
    X = np.empty((len(rows), 2))
    for number, row in enumerate(rows, start=2):
        try:
            X[number - 2] = [float(row[names[0]]), float(row[names[1]])]
        except (TypeError, ValueError):
            raise CsvError(f"CSV {path} line {number}: {row[names[0]]!r}, {row[names[1]]!r} are not numbers") from None
    if not np.isfinite(X).all():
        raise CsvError(f"CSV {path}: every value must be a finite number")
    labels = [row["label"] for row in rows] if "label" in columns else None
    return Points(path.name, X, labels)
