"""Outcomes as aggregates computed where the data is: one SQL query per look, whatever the traffic.

The query is written once, in BigQuery's dialect (what runs on Cloud Run, over the views on a Cloud Logging sink,
quality/bigquery.py), and translated by sqlglot into DuckDB's for the local store (quality/local_store.py). Both
expose the same two relations:

    predictions(service, revision, id, inputs, predicted_class, predicted_value, logged, replayed, confidence)
        one row per predicted row; `id` and `inputs` (the row asked, as JSON) only for an answer that predicted one
        row (the only kind a label can name), and so `confidence` (the top class's probability, when the client
        asked for probabilities);
        a classifier's answer in predicted_class, a regressor's in predicted_value; `logged` a timestamp (the partitions' column on BigQuery);
        `replayed` for a tool's own request (a shadow replay, a warm-up: X-Replay), never a user's answer
    labels(service, id, label_class, label_value, logged)
        one row per label posted to /feedback (or read from a LABELS file: `logged` NULL); `id` an answer's
        X-Answer-Id, which the server made

and the query returns, never rows, but per revision: counts, the confusion cells (true label x predicted class), a
regressor's error sums and a sketch of its predicted values (101 quantiles), the label delay's quantiles; and the
answers labelled, those matching no prediction, and the conflicts (the first label of an answer counts; every later
one for it is a conflict, counted and never judged); a classifier's calibration (per tenth of confidence: answers, right
ones, their confidence summed; and the top-class Brier sum). Every prediction in the window counts (no cap), joined by answer id to
every label posted since the window began: a label that comes back after its step still counts toward it.
"""

from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from typing import Any

from iris_tools.quality.outcomes import Outcomes, RevisionOutcome

# @labels names the relation the labels come from: `labels` (posted to /feedback), or a LABELS file loaded as a table.
QUERY = """
WITH p AS (
  SELECT revision, id, predicted_class, predicted_value, logged, confidence FROM predictions
  WHERE service = @service AND logged >= @start AND logged < @end AND NOT replayed
), given AS (
  SELECT id, label_class, label_value, logged FROM {labels}
  WHERE service = @service AND (logged IS NULL OR logged >= @start)
), l AS (
  SELECT id, MIN_BY(label_class, COALESCE(logged, TIMESTAMP '1970-01-01')) AS label_class,
    MIN_BY(label_value, COALESCE(logged, TIMESTAMP '1970-01-01')) AS label_value, MIN(logged) AS label_logged,
    COUNT(*) - 1 AS later
  FROM given GROUP BY id
), j AS (
  SELECT p.revision, p.id, p.predicted_class, p.predicted_value, p.logged, p.confidence, l.label_logged,
    CASE WHEN p.predicted_class IS NOT NULL THEN l.label_class END AS truth_class,
    CASE WHEN p.predicted_value IS NOT NULL THEN COALESCE(l.label_value, SAFE_CAST(l.label_class AS FLOAT64)) END
      AS truth_value
  FROM p LEFT JOIN l ON p.id = l.id
)
SELECT 'revision' AS kind, revision, CAST(NULL AS STRING) AS predicted_class, CAST(NULL AS STRING) AS label_class,
  COUNT(*) AS predictions, COUNT(id) AS joinable,
  COUNTIF(truth_class IS NOT NULL OR truth_value IS NOT NULL) AS labelled,
  SUM(ABS(predicted_value - truth_value)) AS error_sum,
  SUM(POW(predicted_value - truth_value, 2)) AS error_squares,
  APPROX_QUANTILES(predicted_value, 100) AS value_quantiles,
  COUNT(predicted_value) AS values_count,
  APPROX_QUANTILES(CASE WHEN truth_class IS NOT NULL OR truth_value IS NOT NULL
    THEN GREATEST(TIMESTAMP_DIFF(label_logged, logged, MILLISECOND) / 1000.0, 0) END, 10) AS delay_quantiles
FROM j GROUP BY revision
UNION ALL
SELECT 'cell', revision, predicted_class, truth_class, COUNT(*), COUNT(id), COUNTIF(truth_class IS NOT NULL),
  NULL, NULL, NULL, NULL, NULL
FROM j WHERE predicted_class IS NOT NULL GROUP BY revision, predicted_class, truth_class
UNION ALL
SELECT 'labels', NULL, NULL, NULL, COUNT(*), COUNTIF(l.id IN (SELECT id FROM p WHERE id IS NOT NULL)), SUM(later),
  NULL, NULL, NULL, NULL, NULL
FROM l
UNION ALL
SELECT 'bin', revision, CAST(LEAST(CAST(FLOOR(confidence * 10) AS INT64), 9) AS STRING), NULL, COUNT(*), NULL,
  COUNTIF(predicted_class = truth_class), SUM(confidence),
  SUM(POW(confidence - IF(predicted_class = truth_class, 1.0, 0.0), 2)), NULL, NULL, NULL
FROM j WHERE confidence IS NOT NULL AND truth_class IS NOT NULL
GROUP BY revision, LEAST(CAST(FLOOR(confidence * 10) AS INT64), 9)
"""
# The stable revision's newest labelled answers to users, with the row each answered: what the paired judgement
# replays to a candidate at 0% (rollout/paired.py). Rows, but at most @limit of them, whatever the traffic.
LABELLED_ANSWERS = """
WITH l AS (
  SELECT id, MIN_BY(label_class, COALESCE(logged, TIMESTAMP '1970-01-01')) AS label_class,
    MIN_BY(label_value, COALESCE(logged, TIMESTAMP '1970-01-01')) AS label_value
  FROM {labels} WHERE service = @service AND (logged IS NULL OR logged >= @start) GROUP BY id
)
SELECT p.id, p.inputs, p.predicted_class, p.predicted_value, l.label_class,
  COALESCE(l.label_value, SAFE_CAST(l.label_class AS FLOAT64)) AS label_value
FROM predictions AS p JOIN l ON p.id = l.id
WHERE p.service = @service AND p.revision = @revision AND p.logged >= @start AND NOT p.replayed
  AND p.inputs IS NOT NULL AND (p.predicted_class IS NOT NULL AND l.label_class IS NOT NULL
    OR p.predicted_value IS NOT NULL AND COALESCE(l.label_value, SAFE_CAST(l.label_class AS FLOAT64)) IS NOT NULL)
ORDER BY p.logged DESC
LIMIT {limit}
"""
ANSWER_COLUMNS = ("id", "inputs", "predicted_class", "predicted_value", "label_class", "label_value")
COLUMNS = ("kind", "revision", "predicted_class", "label_class", "predictions", "joinable", "labelled", "error_sum",
           "error_squares", "value_quantiles", "values_count", "delay_quantiles")


@dataclass(frozen=True)
class LabelledAnswer:
    """One answer a revision gave a user, the row it answered, and the true label that came back for it."""

    id: str
    row: list[Any]
    answer: str | float
    label: str | float

    @classmethod
    def of(cls, id: str, inputs: str | None, predicted_class: str | None, predicted_value: float | None,
           label_class: str | None, label_value: float | None) -> "LabelledAnswer":
        numeric = predicted_class is None
        return cls(id, json.loads(inputs) if inputs else [], predicted_value if numeric else predicted_class,
                   label_value if numeric else label_class)


def moment(seconds: float) -> datetime.datetime:
    """Epoch seconds as the query's timestamp parameters take them."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


@functools.cache
def query(dialect: str, labels: str = "labels") -> str:
    """The query in `dialect` ("bigquery" as written, or "duckdb"), reading labels from the relation `labels`."""
    return translated(QUERY.format(labels=labels), dialect)


@functools.cache
def labelled_answers(dialect: str, limit: int, labels: str = "labels") -> str:
    """The replay set's query in `dialect`: at most `limit` rows."""
    return translated(LABELLED_ANSWERS.format(labels=labels, limit=int(limit)), dialect)


def translated(text: str, dialect: str) -> str:
    if dialect == "bigquery":
        return text
    import sqlglot

    return sqlglot.transpile(text, read="bigquery", write=dialect)[0]


def outcomes_of(rows: Iterable[Mapping[str, Any]]) -> Outcomes:
    """The query's rows as Outcomes: per revision, its counts, confusion and mix (a classifier) or error sums and
    sketches (a regressor)."""
    revisions: dict[str, RevisionOutcome] = {}
    labelled = matched = conflicts = 0
    cells = []
    for row in rows:
        if row["kind"] == "labels":
            labelled, matched = int(row["predictions"] or 0), int(row["joinable"] or 0)
            conflicts = int(row["labelled"] or 0)
        elif row["kind"] in ("cell", "bin"):
            cells.append(row)
        else:
            values = int(row["values_count"] or 0)
            revisions[row["revision"]] = RevisionOutcome(
                row["revision"], predictions=int(row["predictions"]), joinable=int(row["joinable"]),
                labelled=int(row["labelled"]), error_sum=float(row["error_sum"] or 0.0),
                error_squares=float(row["error_squares"] or 0.0),
                sketch=[float(v) for v in row["value_quantiles"]] if values and row["value_quantiles"] else None,
                values_count=values,
                delay_sketch=[float(v) for v in row["delay_quantiles"]] if row["delay_quantiles"] else None)
    for row in cells:
        outcome = revisions[row["revision"]]
        if row["kind"] == "bin":  # answers, right ones, their confidence summed; the Brier sum in error_squares
            outcome.bins[int(row["predicted_class"])] = [int(row["predictions"]), int(row["labelled"]),
                                                         float(row["error_sum"])]
            outcome.brier_sum += float(row["error_squares"])
            continue
        predicted, truth, count = row["predicted_class"], row["label_class"], int(row["predictions"])
        outcome.mix[predicted] = outcome.mix.get(predicted, 0) + count
        if truth is not None:
            outcome.correct += count if truth == predicted else 0
            outcome.confusion.setdefault(truth, {})[predicted] = count
    for outcome in revisions.values():
        outcome.mix = dict(sorted(outcome.mix.items()))
        outcome.confusion = {truth: dict(sorted(row.items())) for truth, row in sorted(outcome.confusion.items())}
    return Outcomes(dict(sorted(revisions.items())), labelled + conflicts, labelled - matched, conflicts)
