"""Outcomes on Cloud Run: BigQuery, fed by a Cloud Logging sink, read with Google's own client.

Cloud Logging routes the service's prediction and feedback lines to a BigQuery dataset (`make outcomes-sink` makes
the sink, or OUTCOMES_TABLE names a dataset one fills): they land in the partitioned table
`run_googleapis_com_stdout`, one column per JSON field, typed by the first line that had it. Two views give them the
relations the aggregate query reads (quality/aggregate.py), `predictions` and `labels`; each look is that one query,
filtered on the partitioning column, so it scans the window's partitions, not the table's history.

A sink's table is typed by what it saw first: a classifier's `predictions` are strings, a regressor's numbers. The
views are written for the types the table has, and written again when its schema changes (a field such as `replay`
appears with the first line that has it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from iris_tools.cli.failures import ToolError
from iris_tools.google.gcloud import Gcloud
from iris_tools.quality.aggregate import (ANSWER_COLUMNS, COLUMNS, LabelledAnswer, labelled_answers, moment,
                                          outcomes_of, query)
from iris_tools.quality.outcomes import Outcomes, TrueLabel

SINK_TABLE = "run_googleapis_com_stdout"  # where a sink puts Cloud Run's stdout lines
DEFAULT_DATASET = "iris_outcomes"
NUMERIC = ("FLOAT", "FLOAT64", "INTEGER", "INT64", "NUMERIC", "BIGNUMERIC")


def sink_filter(service: str) -> str:
    """The Cloud Logging filter of the lines the outcomes need: the service's predictions and labels."""
    return (f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" AND '
            f'(jsonPayload.kind="prediction" OR jsonPayload.kind="feedback")')


def _answer_columns(kind: str | None, name: str) -> tuple[str, str]:
    """(class, value) expressions for a field whose BigQuery type is `kind`: a string is a class name, a number a
    regressor's value; a field no line has had yet is neither."""
    if kind is None:
        return "CAST(NULL AS STRING)", "CAST(NULL AS FLOAT64)"
    if kind in NUMERIC:
        return "CAST(NULL AS STRING)", f"CAST({name} AS FLOAT64)"
    return f"CAST({name} AS STRING)", "CAST(NULL AS FLOAT64)"


def views(dataset: str, schema: dict[str, Any]) -> list[str]:
    """The DDL of the two views over the sink's table, for its schema ({"jsonPayload.predictions": "STRING", ...})."""
    table = f"`{dataset}.{SINK_TABLE}`"
    predicted_class, predicted_value = _answer_columns(schema.get("jsonPayload.predictions"), "answer")
    label_class, label_value = _answer_columns(schema.get("jsonPayload.labels.label"), "given.label")
    replayed = "jsonPayload.replay IS NOT NULL" if "jsonPayload.replay" in schema else "FALSE"
    inputs = ("IF(jsonPayload.rows = 1 AND ARRAY_LENGTH(jsonPayload.predictions) = 1, "
              "TO_JSON_STRING(jsonPayload.inputs[SAFE_OFFSET(0)]), NULL)" if "jsonPayload.inputs" in schema
              else "CAST(NULL AS STRING)")
    confidence = ("IF(jsonPayload.rows = 1 AND ARRAY_LENGTH(jsonPayload.predictions) = 1, "
                  "jsonPayload.confidence[SAFE_OFFSET(0)], NULL)" if "jsonPayload.confidence" in schema
                  else "CAST(NULL AS FLOAT64)")
    answer_id = ("IF(jsonPayload.rows = 1 AND ARRAY_LENGTH(jsonPayload.predictions) = 1, jsonPayload.answer_id, NULL)"
                 if "jsonPayload.answer_id" in schema else "CAST(NULL AS STRING)")  # a label names the server's id
    service = ("COALESCE(jsonPayload.service, resource.labels.service_name)" if "jsonPayload.service" in schema
               else "resource.labels.service_name")
    statements = [f"""CREATE OR REPLACE VIEW `{dataset}.predictions` AS
SELECT resource.labels.service_name AS service, resource.labels.revision_name AS revision,
  {answer_id} AS id,
  {inputs} AS inputs, {predicted_class} AS predicted_class, {predicted_value} AS predicted_value, timestamp AS logged,
  {replayed} AS replayed, {confidence} AS confidence
FROM {table}, UNNEST(jsonPayload.predictions) AS answer
WHERE jsonPayload.kind = 'prediction'"""]
    if "jsonPayload.labels.id" in schema:
        statements.append(f"""CREATE OR REPLACE VIEW `{dataset}.labels` AS
SELECT {service} AS service, given.id AS id, {label_class} AS label_class, {label_value} AS label_value,
  timestamp AS logged
FROM {table}, UNNEST(jsonPayload.labels) AS given
WHERE jsonPayload.kind = 'feedback'""")
    else:  # no label has come back yet: an empty relation of the same columns
        statements.append(f"""CREATE OR REPLACE VIEW `{dataset}.labels` AS
SELECT CAST(NULL AS STRING) AS service, CAST(NULL AS STRING) AS id, CAST(NULL AS STRING) AS label_class,
  CAST(NULL AS FLOAT64) AS label_value, CAST(NULL AS TIMESTAMP) AS logged
FROM UNNEST(ARRAY<INT64>[]) AS nothing""")
    return statements


def flatten(fields: Any, prefix: str = "") -> dict[str, str]:
    """A table schema's fields as dotted names and their types."""
    found: dict[str, str] = {}
    for field in fields:
        name = f"{prefix}{field.name}"
        found[name] = field.field_type
        if field.fields:
            found.update(flatten(field.fields, name + "."))
    return found


class BigQueryStore:
    def __init__(self, client: Any, dataset: str) -> None:
        self.client = client
        self.dataset = dataset
        self._schema_seen: str | None = None
        self._file_loaded: tuple[list[TrueLabel], str] | None = None  # the LABELS file's labels, and their table

    @classmethod
    def from_gcloud(cls, gcloud: Gcloud, dataset: str | None) -> "BigQueryStore":
        """Google's client with gcloud's token and project, at gcloud's BigQuery endpoint (its override, if set)."""
        from google.cloud import bigquery
        from google.oauth2.credentials import Credentials

        endpoint = gcloud.property("api_endpoint_overrides/bigquery")
        options = {"api_endpoint": endpoint.rstrip("/").removesuffix("/bigquery/v2")} if endpoint else None
        client = bigquery.Client(project=gcloud.project, credentials=Credentials(gcloud.access_token() or "local"),
                                 client_options=options)
        return cls(client, dataset or f"{gcloud.project}.{DEFAULT_DATASET}")

    def _ensure_views(self) -> None:
        from google.api_core.exceptions import NotFound

        try:
            table = self.client.get_table(f"{self.dataset}.{SINK_TABLE}")
        except NotFound:
            raise ToolError(f"OUTCOMES_TABLE={self.dataset}: no table {SINK_TABLE} yet. A sink writes it with the "
                            f"first line it routes, within minutes of the first request after `make outcomes-sink` "
                            f"(docs/cloud-run.md)") from None
        schema = flatten(table.schema)
        fingerprint = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
        if fingerprint != self._schema_seen:
            for statement in views(self.dataset, schema):
                self.client.query_and_wait(statement)
            self._schema_seen = fingerprint

    def _file_labels(self, service: str, labels: list[TrueLabel]) -> str:
        """A LABELS file's labels as a table of the dataset (a load job: no cap, no query size limit), named by its
        content; loaded once for the list a rollout's looks all pass (OutcomeReader reads the file once)."""
        from google.cloud import bigquery

        if self._file_loaded is not None and self._file_loaded[0] is labels:
            return self._file_loaded[1]
        rows = [{"service": service, "id": label.id, "label_class": str(label.label)} for label in labels]
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
        table = f"{self.dataset}.file_labels_{digest}"
        schema = [bigquery.SchemaField("service", "STRING"), bigquery.SchemaField("id", "STRING"),
                  bigquery.SchemaField("label_class", "STRING"), bigquery.SchemaField("label_value", "FLOAT64"),
                  bigquery.SchemaField("logged", "TIMESTAMP")]
        config = bigquery.LoadJobConfig(schema=schema, write_disposition="WRITE_TRUNCATE")
        self.client.load_table_from_json(rows, table, job_config=config).result()
        self._file_loaded = (labels, f"`{table}`")
        return self._file_loaded[1]

    def _relation(self, service: str, file_labels: list[TrueLabel] | None) -> str:
        self._ensure_views()
        return "labels" if file_labels is None else self._file_labels(service, file_labels)

    def _run(self, text: str, *parameters: Any) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(default_dataset=self.dataset, query_parameters=list(parameters))
        return self.client.query_and_wait(text, job_config=config)

    def outcomes(self, service: str, start: float, end: float, file_labels: list[TrueLabel] | None = None
                 ) -> Outcomes:
        from google.cloud.bigquery import ScalarQueryParameter as Parameter

        rows = self._run(query("bigquery", self._relation(service, file_labels)),
                         Parameter("service", "STRING", service), Parameter("start", "TIMESTAMP", moment(start)),
                         Parameter("end", "TIMESTAMP", moment(end)))
        return outcomes_of({column: row.get(column) for column in COLUMNS} for row in rows)

    def labelled_answers(self, service: str, revision: str, since: float, limit: int,
                         file_labels: list[TrueLabel] | None = None) -> list[LabelledAnswer]:
        from google.cloud.bigquery import ScalarQueryParameter as Parameter

        rows = self._run(labelled_answers("bigquery", limit, self._relation(service, file_labels)),
                         Parameter("service", "STRING", service), Parameter("revision", "STRING", revision),
                         Parameter("start", "TIMESTAMP", moment(since)))
        return [LabelledAnswer.of(*(row.get(column) for column in ANSWER_COLUMNS)) for row in rows]
