"""Where predictions and labels are read: Cloud Logging's entries:list (the API `gcloud logging read` uses; the local
Cloud Run answers it from the revisions' own logs, so both targets share this path), or labels from an `id,label`
CSV file (labels that arrive in bulk)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from iris_tools.cli.failures import ToolError
from iris_tools.google.logging import Logging
from iris_tools.google.timestamps import parse_timestamp
from iris_tools.quality.outcomes import Outcomes, Prediction, TrueLabel, is_number, join
from shared.request_id import MAX_ID_CHARS



def _read(logging: Logging, service: str, kind: str, window: tuple[float, float | None],
          limit: int) -> list[dict[str, Any]]:
    query = (f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" '
             f'AND jsonPayload.kind="{kind}"')
    return logging.entries(query, window[0], window[1], limit)


def since(freshness: str, now: float) -> float:
    """gcloud's --freshness (`45s`, `30m`, `1h`, `2d`) as the epoch second it reaches back to."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return now - float(freshness[:-1]) * units[freshness[-1]]
    except (KeyError, ValueError, IndexError):
        raise ToolError(f"OUTCOME_FRESHNESS={freshness!r}: a duration such as 30m, 1h or 2d") from None


def _time(entry: dict[str, Any]) -> float:
    try:
        return parse_timestamp(entry.get("timestamp") or entry.get("jsonPayload", {}).get("time", ""))
    except ValueError:
        return 0.0


def logged_predictions(logging: Logging, service: str, window: tuple[float, float | None],
                       limit: int) -> list[Prediction]:
    """The service's prediction lines: one Prediction per predicted row, with the answer's id when it had one row."""
    found = []
    for entry in _read(logging, service, "prediction", window, limit):
        payload = entry.get("jsonPayload") or {}
        revision = (entry.get("resource") or {}).get("labels", {}).get("revision_name") or payload.get("revision")
        predicted = payload.get("predictions") or []
        if not revision or not isinstance(predicted, list):
            continue
        single = payload.get("rows") == 1 and len(predicted) == 1
        identity = payload.get("request_id") if single and isinstance(payload.get("request_id"), str) else None
        at = _time(entry)
        found.extend(Prediction(identity, revision, answer if is_number(answer) else str(answer), at)
                     for answer in predicted)
    return found


def logged_labels(logging: Logging, service: str, window: tuple[float, float | None], limit: int) -> list[TrueLabel]:
    """The labels posted to the service's `/feedback` (any revision's), oldest first."""
    found = []
    for entry in sorted(_read(logging, service, "feedback", window, limit), key=_time):
        at = _time(entry)
        for item in (entry.get("jsonPayload") or {}).get("labels") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and (
                    isinstance(item.get("label"), str) or is_number(item.get("label"))):
                found.append(TrueLabel(item["id"], item["label"], at))
    return found


def file_labels(path: Path) -> list[TrueLabel]:
    """`id,label` rows (a header row `id,label` is skipped); ToolError naming the row that does not fit."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ToolError(f"LABELS={path}: cannot be read ({exc.strerror})") from None
    found = []
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or (number == 1 and [cell.strip().lower() for cell in row] == ["id", "label"]):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip() or len(row[0].strip()) > MAX_ID_CHARS:
            raise ToolError(f"LABELS={path}: row {number} is not id,label: {','.join(row)[:80]!r}")
        found.append(TrueLabel(row[0].strip(), row[1].strip()))
    return found


class OutcomeReader:
    """A service's outcomes over a window, for the gate: predictions made in it, labels back since it began (from
    the feedback lines, or a file read once)."""

    def __init__(self, logging: Logging, service: str, labels: str, limit: int = 5000) -> None:
        self.logging = logging
        self.service = service
        self.source = labels
        self.limit = limit
        self._file = None if labels == "feedback" else file_labels(Path(labels))

    def outcomes(self, start: float, end: float) -> Outcomes:
        predictions = logged_predictions(self.logging, self.service, (start, end), self.limit)
        labels = self._file if self._file is not None else logged_labels(self.logging, self.service, (start, None),
                                                                         self.limit)
        return join(predictions, labels)
