"""A labelled load, so a local rollout shows the quality checks at work: points drawn from the iris data with
jitter (or rows of a CSV file of your own model's features and a `label` column, LOAD_CSV) are sent to a service
URL at a steady rate, and each answer's true label is posted back to `/feedback` after a delay, as labels come back
in life, signed with the feedback key (FEEDBACK_KEY, or the one `make feedback-key` keeps) and naming each answer by
its X-Answer-Id. What was sent, what answered and the true label are written to a record, the ground truth the join must
reproduce. A CSV label that reads as a number is a regressor's true value; any other is a class name."""

from __future__ import annotations

import csv
import json
import math
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sklearn.datasets import load_iris

from iris_tools.local.state import write_atomically
from iris_tools.local.feedback_key import signed_headers

FEEDBACK_BATCH = 500


@dataclass(frozen=True)
class Answered:
    id: str
    revision: str
    predicted: str | float
    label: str | float
    at: float


def labelled_rows(path: Path) -> list[tuple[dict[str, str], str | float]]:
    """A CSV file's rows as (named features, label): a header row names the features and a `label` column."""
    from iris_tools.cli.failures import ToolError

    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "label" not in reader.fieldnames:
                raise ToolError(f"LOAD_CSV={path}: a header row naming the features and a label column is needed")
            rows = [({k: v for k, v in row.items() if k != "label"}, _label(row["label"])) for row in reader]
    except OSError as exc:
        raise ToolError(f"LOAD_CSV={path}: cannot be read ({exc.strerror})") from None
    if not rows:
        raise ToolError(f"LOAD_CSV={path}: no rows")
    return rows


def _label(text: str) -> str | float:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _text(value: float) -> str:
    """A label the CSV had as a number, as its text again: 0.0 read from "0" is the integer class "0"."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _said(error: urllib.error.HTTPError) -> str:
    """The service's own words for a refusal (its JSON `error`), else the status line."""
    try:
        return str(json.loads(error.read())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(error.reason)


def iris_points() -> tuple[list[tuple[float, float]], list[str], tuple[float, float]]:
    """The iris sepal lengths and widths, their class names, and each feature's standard deviation."""
    data = load_iris()
    rows = [(float(r[0]), float(r[1])) for r in data.data]
    names = [str(data.target_names[t]) for t in data.target]
    spread = tuple(float(data.data[:, i].std()) for i in (0, 1))
    return rows, names, spread  # type: ignore[return-value]


class LabelledLoad:
    def __init__(self, url: str, rate: float, label_delay_s: float, jitter: float, token: str | None = None,
                 seed: int | None = None, rows: list[tuple[dict[str, str], str | float]] | None = None,
                 feedback_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.rows = rows  # None: iris points with jitter
        self.rate = rate
        self.label_delay_s = label_delay_s
        self.jitter = jitter
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.feedback_key = feedback_key
        self.random = random.Random(seed)
        self.answered: list[Answered] = []
        self.failures: list[str] = []
        self.labels_posted = 0
        self._due: list[Answered] = []
        self._lock = threading.Lock()

    def _ask(self, row: tuple[float, float] | dict[str, str], label: str | float) -> None:
        """One answer asked: an iris point as the tutorial's GET; a CSV row by its feature names (the GET route
        every model version takes, one row, so the answer has an id of its own)."""
        named = row if isinstance(row, dict) else {"length": f"{row[0]:.3f}", "width": f"{row[1]:.3f}"}
        request = urllib.request.Request(f"{self.url}/?{urllib.parse.urlencode(named)}", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = json.loads(response.read())
                answer = body["prediction"] if "prediction" in body else body["predicted_class"]
                if "predicted_class" in body:  # a class: posted as the CSV has it, its text (0, true, setosa)
                    label = label if isinstance(label, str) else _text(label)
                answered = Answered(response.headers["X-Answer-Id"], response.headers.get("X-Revision") or "?",
                                    answer, label, time.time())
        except (OSError, ValueError, KeyError) as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.answered.append(answered)
            self._due.append(answered)

    def _post_due(self, now: float, everything: bool = False) -> None:
        with self._lock:
            due = [a for a in self._due if everything or now - a.at >= self.label_delay_s]
            self._due = [] if everything else [a for a in self._due if now - a.at < self.label_delay_s]
        for start in range(0, len(due), FEEDBACK_BATCH):
            batch = [{"id": a.id, "label": a.label} for a in due[start: start + FEEDBACK_BATCH]]
            body = json.dumps(batch).encode()
            request = urllib.request.Request(f"{self.url}/feedback", data=body, method="POST", headers={
                **self.headers, "Content-Type": "application/json", **signed_headers(body, self.feedback_key)})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.labels_posted += json.loads(response.read())["accepted"]
            except urllib.error.HTTPError as exc:
                self.failures.append(f"feedback: {exc.code}: {_said(exc)}")
            except (OSError, ValueError, KeyError) as exc:
                self.failures.append(f"feedback: {type(exc).__name__}: {exc}")

    def run(self, seconds: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Send for `seconds` (or until `stop()`), then post the labels still due, waiting out their delay."""
        rows, names, spread = iris_points()
        interval = 1.0 / self.rate
        started = next_at = time.monotonic()
        while time.monotonic() - started < seconds and not stop():
            if self.rows is not None:
                self._ask(*self.rows[self.random.randrange(len(self.rows))])
            else:
                index = self.random.randrange(len(rows))
                row = tuple(value + self.random.gauss(0.0, self.jitter * sd) for value, sd in zip(rows[index], spread))
                self._ask(row, names[index])
            self._post_due(time.time())
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.time() + self.label_delay_s
        while self._due and time.time() < deadline:
            self._post_due(time.time())
            time.sleep(0.2)
        self._post_due(time.time(), everything=True)

    def write(self, path: Path) -> None:
        write_atomically(path, json.dumps({"url": self.url, "answered": [asdict(a) for a in self.answered],
                                           "labels_posted": self.labels_posted, "failures": self.failures[:20]},
                                          indent=1))
