"""Where outcomes are computed: the store of each target, and labels from an `id,label` CSV file (labels that arrive
in bulk).

    TARGET=local     the local store: DuckDB over the local Cloud Run's revision logs (quality/local_store.py)
    TARGET=cloudrun  BigQuery, fed by a Cloud Logging sink (quality/bigquery.py; `make outcomes-sink` makes one)

Both answer the same aggregate query (quality/aggregate.py): per-revision counts, never rows.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Protocol

from iris_tools.cli.failures import ToolError
from iris_tools.google.gcloud import Gcloud
from iris_tools.quality.aggregate import LabelledAnswer
from iris_tools.quality.outcomes import Outcomes, TrueLabel
from shared.request_id import MAX_ID_CHARS


class OutcomeStore(Protocol):
    def outcomes(self, service: str, start: float, end: float, file_labels: list[TrueLabel] | None = None
                 ) -> Outcomes: ...

    def labelled_answers(self, service: str, revision: str, since: float, limit: int,
                         file_labels: list[TrueLabel] | None = None) -> list[LabelledAnswer]: ...


def since(freshness: str, now: float) -> float:
    """gcloud's --freshness (`45s`, `30m`, `1h`, `2d`) as the epoch second it reaches back to."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return now - float(freshness[:-1]) * units[freshness[-1]]
    except (KeyError, ValueError, IndexError):
        raise ToolError(f"OUTCOME_FRESHNESS={freshness!r}: a duration such as 30m, 1h or 2d") from None


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


def first_labels(labels: list[TrueLabel]) -> tuple[list[TrueLabel], int]:
    """Each answer's first label (a file is read in order, as feedback is by time), and how many later rows named an
    answer already labelled (conflicts: counted, never judged)."""
    seen: set[str] = set()
    first = []
    for label in labels:
        if label.id not in seen:
            seen.add(label.id)
            first.append(label)
    return first, len(labels) - len(first)


def store_for(gcloud: Gcloud, run_dir: Path, table: str | None) -> OutcomeStore:
    """The target's store: the local one under RUN_DIR, or BigQuery's dataset OUTCOMES_TABLE (project.dataset)."""
    if gcloud.target == "local":
        from iris_tools.google.targets import directories
        from iris_tools.quality.local_store import LocalStore

        return LocalStore(directories(run_dir)[0] / "logs", run_dir / "outcomes")
    from iris_tools.quality.bigquery import BigQueryStore

    return BigQueryStore.from_gcloud(gcloud, table)


class OutcomeReader:
    """A service's outcomes over a window, for the gate: predictions made in it, labels back since it began (from
    the feedback lines, or a file read once)."""

    def __init__(self, store: OutcomeStore, service: str, labels: str) -> None:
        self.store = store
        self.service = service
        self.source = labels
        self._file: list[TrueLabel] | None = None
        self._file_conflicts = 0  # rows of the file naming an answer an earlier row labelled
        if labels != "feedback":
            self._file, self._file_conflicts = first_labels(file_labels(Path(labels)))

    def outcomes(self, start: float, end: float) -> Outcomes:
        found = self.store.outcomes(self.service, start, end, self._file)
        if not self._file_conflicts:
            return found
        return dataclasses.replace(found, labels=found.labels + self._file_conflicts,
                                   conflicts=found.conflicts + self._file_conflicts)

    def labelled_answers(self, revision: str, since: float, limit: int) -> list[LabelledAnswer]:
        """What the paired judgement replays: the revision's newest labelled answers to users."""
        return self.store.labelled_answers(self.service, revision, since, limit, self._file)
