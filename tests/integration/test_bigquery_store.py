"""The Cloud Run outcome store through Google's own BigQuery client, against a stand-in for BigQuery's REST API on
loopback that runs what it is sent (sqlglot's translation from BigQuery's dialect) in DuckDB over a table shaped as a
Cloud Logging sink writes it: the views made for the table's schema, the one aggregate query with its parameters,
and the outcomes equal to the local store's on the same lines."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iris_tools.quality.bigquery import SINK_TABLE, BigQueryStore
from iris_tools.quality.local_store import LocalStore
from tests.unit.test_outcome_store import T0, append, feedback, prediction

SINK_COLUMNS = ("timestamp TIMESTAMPTZ, resource STRUCT(labels STRUCT(service_name VARCHAR, revision_name VARCHAR)), "
                "jsonPayload STRUCT(kind VARCHAR, service VARCHAR, revision VARCHAR, answer_id VARCHAR, request_id VARCHAR, "
                "rows BIGINT, "
                "predictions VARCHAR[], labels STRUCT(id VARCHAR, label VARCHAR)[], replay VARCHAR)")
SINK_SCHEMA = [  # as BigQuery describes the table a sink made from a classifier's lines
    {"name": "timestamp", "type": "TIMESTAMP"},
    {"name": "resource", "type": "RECORD", "fields": [{"name": "labels", "type": "RECORD", "fields": [
        {"name": "service_name", "type": "STRING"}, {"name": "revision_name", "type": "STRING"}]}]},
    {"name": "jsonPayload", "type": "RECORD", "fields": [
        {"name": "kind", "type": "STRING"}, {"name": "service", "type": "STRING"}, {"name": "revision", "type": "STRING"},
        {"name": "answer_id", "type": "STRING"}, {"name": "request_id", "type": "STRING"},
        {"name": "rows", "type": "INTEGER"},
        {"name": "predictions", "type": "STRING", "mode": "REPEATED"},
        {"name": "labels", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "id", "type": "STRING"}, {"name": "label", "type": "STRING"}]},
        {"name": "replay", "type": "STRING"}]}]


class FakeBigQuery:
    """jobs.query and tables.get, answered from DuckDB; every query text it was sent, kept."""

    def __init__(self, lines: list[str], tmp_path: Path) -> None:
        import duckdb

        self.sent: list[dict] = []
        self.datasets: dict[str, dict] = {}  # datasetId -> its resource, as datasets.insert / patch left it
        self.db = duckdb.connect()
        path = tmp_path / "lines.ndjson"
        path.write_text("\n".join(lines) + "\n")
        self.db.execute(f"CREATE TABLE {SINK_TABLE}({SINK_COLUMNS})")
        self.db.execute(f"""INSERT INTO {SINK_TABLE} SELECT CAST(time AS TIMESTAMPTZ),
            {{'labels': {{'service_name': service, 'revision_name': revision}}}},
            {{'kind': kind, 'service': service, 'revision': revision, 'answer_id': answer_id,
              'request_id': request_id, 'rows': rows,
              'predictions': predictions, 'labels': labels, 'replay': replay}}
            FROM read_json(?, format = 'newline_delimited', columns = {{'time': 'VARCHAR', 'kind': 'VARCHAR',
              'service': 'VARCHAR', 'revision': 'VARCHAR', 'answer_id': 'VARCHAR', 'request_id': 'VARCHAR',
              'rows': 'BIGINT',
              'predictions': 'VARCHAR[]', 'labels': 'STRUCT(id VARCHAR, label VARCHAR)[]', 'replay': 'VARCHAR'}})""",
                        [str(path)])

    def run(self, body: dict) -> dict:
        import sqlglot

        self.sent.append(body)
        statement = sqlglot.parse_one(body["query"], read="bigquery")
        for table in statement.find_all(sqlglot.exp.Table):  # the dataset is this one DuckDB database
            table.set("catalog", None)
            table.set("db", None)
        parameters = {}
        for item in body.get("queryParameters", []):
            value = item["parameterValue"]["value"]
            if item["parameterType"]["type"] == "TIMESTAMP":
                value = datetime.datetime.fromisoformat(value.replace(" UTC", "+00:00"))
            parameters[item["name"]] = value
        cursor = self.db.execute(statement.sql("duckdb"), parameters or None)
        if cursor.description is None:
            return {"kind": "bigquery#queryResponse", "jobComplete": True, "totalRows": "0",
                    "jobReference": {"projectId": "p", "jobId": "ddl", "location": "US"}}
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
        fields = [{"name": name, "type": self._type(name), "mode": "REPEATED" if name.endswith("quantiles") else
                   "NULLABLE"} for name in names]
        return {"kind": "bigquery#queryResponse", "jobComplete": True, "totalRows": str(len(rows)),
                "jobReference": {"projectId": "p", "jobId": "q", "location": "US"}, "schema": {"fields": fields},
                "rows": [{"f": [self._cell(value, field) for value, field in zip(row, fields)]} for row in rows]}

    @staticmethod
    def _type(name: str) -> str:
        if name in ("predictions", "joinable", "labelled", "values_count"):
            return "INTEGER"
        return "FLOAT" if name.startswith(("error", "value", "delay")) else "STRING"

    @staticmethod
    def _cell(value: object, field: dict) -> dict:
        if field["mode"] == "REPEATED" and value is None:  # BigQuery has no NULL array: an empty one
            return {"v": []}
        if isinstance(value, list):
            return {"v": [{"v": str(item)} for item in value]}
        return {"v": None if value is None else str(value)}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[str, FakeBigQuery]]:
    lines = [prediction("iris-00001-abc", ["setosa"], T0 + 1, "a"), prediction("iris-00001-abc", ["virginica"], T0 + 2, "b"),
             prediction("iris-00002-xyz", ["setosa"], T0 + 3, "c"), prediction("iris-00002-xyz", ["setosa", "setosa"], T0 + 4),
             prediction("iris-00002-xyz", ["versicolor"], T0 + 5, "w", replay="shadow"),
             feedback("iris-00001-abc", [("a", "setosa"), ("b", "versicolor"), ("c", "setosa"), ("w", "setosa")], T0 + 9),
             feedback("iris-00002-xyz", [("a", "virginica"), ("c", "versicolor")], T0 + 10)]  # later: conflicts
    service = FakeBigQuery(lines, tmp_path)
    append(tmp_path / "logs", "iris-00001-abc", *lines)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, document: dict) -> None:
            data = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dataset(self) -> str | None:
            parts = self.path.split("?")[0].rstrip("/").split("/")
            return parts[-1] if len(parts) >= 2 and parts[-2] == "datasets" else None

        def do_PATCH(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = self._dataset()
            service.datasets[name].update(body)
            self._send(200, service.datasets[name])

        def do_GET(self) -> None:
            name = self._dataset()
            if name is not None:
                if name in service.datasets:
                    self._send(200, service.datasets[name])
                else:
                    self._send(404, {"error": {"code": 404, "message": f"Not found: Dataset p:{name}",
                                               "status": "NOT_FOUND"}})
            elif self.path.split("?")[0].endswith(f"/tables/{SINK_TABLE}"):
                self._send(200, {"kind": "bigquery#table", "tableReference": {
                    "projectId": "p", "datasetId": "d", "tableId": SINK_TABLE}, "schema": {"fields": SINK_SCHEMA}})
            else:
                self._send(404, {"error": {"code": 404, "message": f"Not found: {self.path}", "status": "NOT_FOUND"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.split("?")[0].endswith("/datasets"):
                name = body["datasetReference"]["datasetId"]
                if name in service.datasets:
                    self._send(409, {"error": {"code": 409, "message": "Already Exists", "status": "ALREADY_EXISTS"}})
                    return
                service.datasets[name] = {**body, "id": f"p:{name}", "etag": "1", "access": []}
                self._send(200, service.datasets[name])
                return
            self._send(200, service.run(body))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", service
    finally:
        server.shutdown()
        server.server_close()


def test_the_bigquery_store_sends_the_one_query_and_reads_what_the_local_store_reads(fake, tmp_path: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    url, service = fake
    client = bigquery.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
    found = BigQueryStore(client, "p.d").outcomes("iris", T0, T0 + 60)
    local = LocalStore(tmp_path / "logs", tmp_path / "outcomes").outcomes("iris", T0, T0 + 60)
    assert found.as_json() == local.as_json()
    first, second = found.revisions["iris-00001-abc"], found.revisions["iris-00002-xyz"]
    assert (first.predictions, first.labelled, first.correct, second.predictions, second.labelled) == (2, 2, 1, 3, 1)
    assert (found.labels, found.unmatched) == (6, 1)  # the shadow's answer is no user's: its label matches nothing
    assert found.conflicts == 2  # the first label of a and c counts, on BigQuery as locally
    views, look = service.sent[:2], service.sent[-1]
    assert "CREATE OR REPLACE VIEW `p.d.predictions`" in views[0]["query"]
    assert "jsonPayload.replay IS NOT NULL" in views[0]["query"]
    assert look["query"].strip().startswith("WITH p AS") and look["defaultDataset"]["datasetId"] == "d"
    assert {p["name"]: p["parameterType"]["type"] for p in look["queryParameters"]} == {
        "service": "STRING", "start": "TIMESTAMP", "end": "TIMESTAMP"}
    again = BigQueryStore(client, "p.d")
    again.outcomes("iris", T0, T0 + 60)
    again.outcomes("iris", T0, T0 + 60)
    assert sum("CREATE OR REPLACE VIEW" in body["query"] for body in service.sent) == 4  # once per store, not per look


class RecordingGcloud:
    """gcloud as create_sink uses it, on Cloud Run: its commands recorded, the sink's writer identity described."""

    target, project, region = "cloudrun", "p", "us-central1"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.commands: list[tuple[str, ...]] = []

    def property(self, name: str) -> str | None:
        return f"{self.endpoint}/bigquery/v2/" if name == "api_endpoint_overrides/bigquery" else None

    def access_token(self) -> str:
        return "token"

    def run(self, *args: str) -> str:
        from iris_tools.google.gcloud import GcloudError

        if args[:3] == ("logging", "sinks", "create") and any(c[:3] == args[:3] for c in self.commands):
            raise GcloudError(f"ERROR: (gcloud.logging.sinks.create) Sink {args[3]} already exists")
        self.commands.append(args)
        return ""

    def json(self, *args: str) -> dict:
        self.commands.append(args)
        return {"name": args[-1], "writerIdentity": "serviceAccount:sink-123@gcp-sa-logging.iam.gserviceaccount.com"}


def test_make_outcomes_sink_makes_the_dataset_the_sink_and_the_writer_s_grant_on_the_dataset_alone(fake) -> None:
    from iris_tools.quality.sink import create_sink

    url, service = fake
    gcloud = RecordingGcloud(url)
    said: list[str] = []
    assert create_sink(gcloud, "churn", "p.outcomes", "us-central1", said.append) == "churn-outcomes"
    create, describe = gcloud.commands
    assert create[:5] == ("logging", "sinks", "create", "churn-outcomes",
                          "bigquery.googleapis.com/projects/p/datasets/outcomes")
    assert '--log-filter=resource.type="cloud_run_revision" AND resource.labels.service_name="churn"' in create[5]
    assert 'jsonPayload.kind="feedback"' in create[5] and create[6] == "--use-partitioned-tables"
    assert describe == ("logging", "sinks", "describe", "churn-outcomes")
    dataset = service.datasets["outcomes"]
    assert dataset["location"] == "us-central1"
    assert {"role": "WRITER", "userByEmail": "sink-123@gcp-sa-logging.iam.gserviceaccount.com"} in dataset["access"]
    assert any("roles/bigquery.dataEditor" in line for line in said)
    create_sink(gcloud, "churn", "p.outcomes", "us-central1", said.append)  # again: updated, the same one grant
    assert gcloud.commands[2][:4] == ("logging", "sinks", "update", "churn-outcomes")
    assert len([a for a in service.datasets["outcomes"]["access"] if a.get("role") == "WRITER"]) == 1
