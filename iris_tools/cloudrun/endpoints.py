"""The HTTP face of the local Cloud Run: the part of the Admin API that gcloud uses, and timeSeries.list.

gcloud reaches it as an HTTP proxy (its `proxy/*` properties), so requests arrive in absolute
form (`GET http://us-central1-run.emulator/apis/serving.knative.dev/v1/...`); plain paths work
too. Every error is Google's error JSON (errors.py). CONNECT (any Google API without an
endpoint override here) is refused.
"""

from __future__ import annotations

import json
import re
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from iris_tools.cloudrun.admin_v2 import AdminV2, encode_enums
from iris_tools.cloudrun.control import LocalCloudRun
from iris_tools.cloudrun.errors import (InvalidArgument, RequestTooLarge, ResourceNotFound, RpcError, Unauthenticated,
                                       Unimplemented)
from iris_tools.cloudrun.jobs import EXECUTION_LABEL, JOB_LABEL, STATE_LABEL
from iris_tools.cloudrun.log_entries import list_entries
from iris_tools.cloudrun.metadata_server import is_metadata_request
from iris_tools.cloudrun.metrics import Sampler, Shape, time_series
from iris_tools.cloudrun.resources import NONCE_LABEL, SERVICE_LABEL
from iris_tools.google.monitoring import INSTANCE_COUNT, REQUEST_COUNT, REQUEST_LATENCIES, STARTUP_LATENCIES
from iris_tools.google.timestamps import parse_timestamp

MAX_BODY_BYTES = 1024 * 1024
KNATIVE = r"/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)"
JOBS = r"/apis/run\.googleapis\.com/v1/namespaces/(?P<ns>[^/]+)"  # Cloud Run jobs (jobs.py), v1 as gcloud sends
V2 = r"/v2/projects/(?P<ns>[^/]+)/locations/(?P<region>[^/]+)"  # Cloud Run Admin API v2 (admin_v2.py)
ROUTES = [
    ("services", re.compile(KNATIVE + r"/services/?$")),
    ("service", re.compile(KNATIVE + r"/services/(?P<name>[^/]+)$")),
    ("revisions", re.compile(KNATIVE + r"/revisions/?$")),
    ("revision", re.compile(KNATIVE + r"/revisions/(?P<name>[^/]+)$")),
    ("jobs", re.compile(JOBS + r"/jobs/?$")),
    ("job", re.compile(JOBS + r"/jobs/(?P<name>[^/:]+)$")),
    ("job_run", re.compile(JOBS + r"/jobs/(?P<name>[^/:]+):run$")),
    ("executions", re.compile(JOBS + r"/executions/?$")),
    ("execution", re.compile(JOBS + r"/executions/(?P<name>[^/:]+)$")),
    ("execution_cancel", re.compile(JOBS + r"/executions/(?P<name>[^/:]+):cancel$")),
    ("tasks", re.compile(JOBS + r"/tasks/?$")),
    ("task", re.compile(JOBS + r"/tasks/(?P<name>[^/:]+)$")),
    ("all_services", re.compile(r"/v1/projects/(?P<ns>[^/]+)/locations/(?P<region>[^/]+)/services/?$")),
    ("iam", re.compile(r"/v1/projects/(?P<ns>[^/]+)/locations/[^/]+/services/(?P<name>[^/:]+):(?P<verb>\w+)$")),
    ("project", re.compile(r"/v1/projects/(?P<ns>[^/:]+)$")),
    ("time_series", re.compile(r"/v3/projects/(?P<ns>[^/]+)/timeSeries$")),
    ("log_entries", re.compile(r"/v2/entries:list$")),
    ("v2_services", re.compile(V2 + r"/services/?$")),
    ("v2_service", re.compile(V2 + r"/services/(?P<name>[^/:]+)$")),
    ("v2_revisions", re.compile(V2 + r"/services/(?P<service>[^/:]+)/revisions/?$")),
    ("v2_revision", re.compile(V2 + r"/services/(?P<service>[^/:]+)/revisions/(?P<name>[^/:]+)$")),
    ("v2_operation", re.compile(V2 + r"/operations/(?P<identifier>[^/:]+)(?P<verb>:wait)?$")),
    ("health", re.compile(r"/health$")),
]
_FILTER_TERM = re.compile(r'([\w.]+)\s*=\s*"([^"]*)"')
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)s")


SELECTABLE = (SERVICE_LABEL, NONCE_LABEL)  # what gcloud selects revisions by (a service's; a deploy's by its nonce)


_IN_TERM = re.compile(r"^\s*([\w./-]+)\s+in\s+\(([^)]*)\)\s*$")


def _terms(selector: str | None, selectable: tuple[str, ...],
           sets: bool = False) -> tuple[dict[str, str], dict[str, set[str]]]:
    """A labelSelector of `key=value` terms joined by commas (spaces around `=` allowed, as gcloud sends them) ->
    (the labels a resource must carry, and with `sets` the labels whose value must be one of a set: `label in
    (a,b)`, as gcloud selects tasks by state). Labels outside `selectable` are refused."""
    wanted: dict[str, str] = {}
    within: dict[str, set[str]] = {}
    for term in re.split(r",(?![^(]*\))", selector or ""):  # commas outside parentheses
        if not term.strip():
            continue
        match = _IN_TERM.match(term) if sets else None
        if match and match.group(1) in selectable:
            within[match.group(1)] = {v.strip().lower() for v in match.group(2).split(",") if v.strip()}
            continue
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip().removeprefix("=").strip()  # `==` is equality too
        if not sep or key not in selectable or not value:
            forms = "label=value or label in (a,b)" if sets else "the form label=value"
            raise InvalidArgument.field("labelSelector", f"terms of {forms}, with the labels "
                                        f"{' or '.join(selectable)}; got {selector!r}")
        wanted[key] = value
    return wanted, within


def _selected(selector: str | None) -> dict[str, str]:
    """A revisions labelSelector -> the labels a revision must carry."""
    return _terms(selector, SELECTABLE)[0]


JOB_SELECTABLE = (JOB_LABEL, EXECUTION_LABEL, STATE_LABEL)


METRICS = (REQUEST_COUNT, REQUEST_LATENCIES, INSTANCE_COUNT, STARTUP_LATENCIES)


class Api:
    """Path and method to a LocalCloudRun call; plain values in and out."""

    def __init__(self, cloud_run: LocalCloudRun, sampler: Sampler | None, shape: Shape = Shape()) -> None:
        self.cloud_run = cloud_run
        self.sampler = sampler
        self.shape = shape  # how timeSeries.list answers (metrics.Shape)
        self.v2 = AdminV2(cloud_run)

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            return 200, self._dispatch(method, target, body)
        except RpcError as error:
            return error.http_status, error.body()
        except Exception as exc:  # a fault of ours: Google's error shape all the same, and the trace in our log
            traceback.print_exc()
            error = RpcError(f"internal error ({type(exc).__name__}); see the control plane's log")
            return error.http_status, error.body()

    def _dispatch(self, method: str, target: str, body: bytes) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(target)
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(parts.query).items()}
        for endpoint, pattern in ROUTES:
            match = pattern.match(parts.path)
            if match:
                arguments = match.groupdict()
                if "ns" in arguments:
                    self._check_project(arguments.pop("ns"))
                if endpoint.startswith("v2_"):
                    self.v2.check_region(arguments.pop("region"))
                    answer = getattr(self, f"_{endpoint}")(method, query, body, **arguments)
                    return encode_enums(answer, "enum-encoding=int" in query.get("$alt", ""))
                return getattr(self, f"_{endpoint}")(method, query, body, **arguments)
        raise ResourceNotFound(f"{parts.path}: not a path of the Cloud Run Admin API that this local Cloud Run serves")

    def _check_project(self, namespace: str) -> None:
        run = self.cloud_run
        if namespace not in (run.project, str(run.project_number())):
            raise ResourceNotFound(f"Project '{namespace}' not found or permission denied (this local Cloud Run serves "
                           f"project '{run.project}')")

    @staticmethod
    def _json(body: bytes) -> Any:
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument.field("body", f"malformed JSON ({exc})") from None

    @staticmethod
    def _not_allowed(method: str, allowed: str) -> Unimplemented:
        return Unimplemented(f"{method} is not supported here; use {allowed}")

    def _services(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.services()
        if method == "POST":
            return self.cloud_run.create_service(self._json(body), self.cloud_run.project)
        raise self._not_allowed(method, "GET or POST")

    def _service(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.service(name)
        if method == "PUT":
            return self.cloud_run.replace_service(name, self._json(body), self.cloud_run.project)
        if method == "DELETE":
            return self.cloud_run.delete_service(name)
        raise self._not_allowed(method, "GET, PUT or DELETE")

    def _revisions(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        return self.cloud_run.revisions(_selected(query.get("labelSelector")))

    def _revision(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.revision(name)
        if method == "DELETE":
            return self.cloud_run.delete_revision(name)
        raise self._not_allowed(method, "GET or DELETE")

    # ------------------------------------------------------------ jobs (jobs.py)

    def _jobs(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.jobs.list_jobs()
        if method == "POST":
            return self.cloud_run.jobs.create_job(self._json(body), self.cloud_run.project)
        raise self._not_allowed(method, "GET or POST")

    def _job(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.jobs.job(name)
        if method == "PUT":
            return self.cloud_run.jobs.replace_job(name, self._json(body), self.cloud_run.project)
        if method == "DELETE":
            return self.cloud_run.jobs.delete_job(name)
        raise self._not_allowed(method, "GET, PUT or DELETE")

    def _job_run(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method != "POST":
            raise self._not_allowed(method, "POST")
        return self.cloud_run.jobs.run_job(name, self._json(body))

    def _executions(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        equal, _ = _terms(query.get("labelSelector"), JOB_SELECTABLE)
        return self.cloud_run.jobs.list_executions(equal)

    def _execution(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.cloud_run.jobs.execution(name)
        if method == "DELETE":
            return self.cloud_run.jobs.delete_execution(name)
        raise self._not_allowed(method, "GET or DELETE")

    def _execution_cancel(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method != "POST":
            raise self._not_allowed(method, "POST")
        return self.cloud_run.jobs.cancel_execution(name)

    def _tasks(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        equal, within = _terms(query.get("labelSelector"), JOB_SELECTABLE, sets=True)
        found = self.cloud_run.jobs.task_documents(equal)
        found["items"] = [item for item in found["items"] if all(
            item["metadata"]["labels"].get(key, "").lower() in values for key, values in within.items())]
        return found

    def _task(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        return self.cloud_run.jobs.task(name)

    def _all_services(self, method: str, query: dict, body: bytes, region: str) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        return self.cloud_run.services()

    def _iam(self, method: str, query: dict, body: bytes, name: str, verb: str) -> dict[str, Any]:
        if verb == "getIamPolicy":
            return self.cloud_run.iam_policy(name)
        if verb == "setIamPolicy" and method == "POST":
            return self.cloud_run.set_iam_policy(name, self._json(body))
        if verb == "testIamPermissions" and method == "POST":
            permissions = self._json(body).get("permissions", [])
            return {"permissions": [p for p in permissions if isinstance(p, str)]}
        raise ResourceNotFound(f"{name}:{verb}: no such IAM method")

    def _project(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        run = self.cloud_run
        return {"projectId": run.project, "projectNumber": str(run.project_number()), "name": run.project,
                "lifecycleState": "ACTIVE"}

    def _time_series(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if self.sampler is None:
            raise ResourceNotFound("no figures: the sampler is not running")
        terms = dict(_FILTER_TERM.findall(query.get("filter", "")))
        metric = terms.get("metric.type")
        if metric not in METRICS:
            raise InvalidArgument.field("filter", f"metric.type must be one of {', '.join(METRICS)}")
        try:
            end = parse_timestamp(query["interval.endTime"]) if "interval.endTime" in query else time.time()
            start = parse_timestamp(query["interval.startTime"]) if "interval.startTime" in query else end - 60
        except ValueError as exc:
            raise InvalidArgument.field("interval", f"not an RFC 3339 timestamp ({exc})") from None
        if start > end:
            raise InvalidArgument.field("interval.startTime", "must not be after interval.endTime")
        shape = self.shape
        if query.get("aggregation.alignmentPeriod"):  # points per period, as Cloud Monitoring's ALIGN_DELTA
            if query.get("aggregation.perSeriesAligner", "ALIGN_DELTA") != "ALIGN_DELTA":
                raise InvalidArgument.field("aggregation.perSeriesAligner", "only ALIGN_DELTA is supported")
            period = _DURATION.fullmatch(query["aggregation.alignmentPeriod"])
            if not period or not 1 <= float(period.group(1)) <= 86400:
                raise InvalidArgument.field("aggregation.alignmentPeriod",
                                            "must be a duration of 1 to 86400 seconds, like \"60s\"")
            shape = shape.aligned(float(period.group(1)))
        with self.cloud_run.lock:
            service_of = {name: revision["service"] for name, revision in self.cloud_run.store.revisions.items()}
        series = time_series(self.sampler, metric, start, end, service_of, self.cloud_run.project,
                             self.cloud_run.region, shape)
        for label in ("service_name", "revision_name", "location"):
            wanted = terms.get(f"resource.labels.{label}")
            if wanted is not None:
                series = [s for s in series if s["resource"]["labels"][label] == wanted]
        answer: dict[str, Any] = {"unit": "ms" if metric in (REQUEST_LATENCIES, STARTUP_LATENCIES) else "1"}
        offset = int(query["pageToken"]) if query.get("pageToken", "").isdigit() else 0
        size = self.shape.page_size or len(series) or 1
        answer["timeSeries"] = series[offset: offset + size]
        if offset + size < len(series):
            answer["nextPageToken"] = str(offset + size)
        return answer

    def _log_entries(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method != "POST":
            raise self._not_allowed(method, "POST")
        document = self._json(body)
        names = document.get("resourceNames", []) if isinstance(document, dict) else []
        for name in names if isinstance(names, list) else []:
            self._check_project(str(name).removeprefix("projects/"))
        run = self.cloud_run
        with run.lock:
            revisions = {name: revision["service"] for name, revision in run.store.revisions.items()}
        return list_entries(run.directory / "logs", revisions, run.project, run.region, document, run.jobs.logs())

    # ------------------------------------------------------------ Admin API v2 (admin_v2.py)

    def _v2_services(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        if method == "GET":
            return self.v2.list_services()
        if method == "POST":
            return self.v2.create_service(query.get("serviceId"), self._json(body))
        raise self._not_allowed(method, "GET or POST")

    def _v2_service(self, method: str, query: dict, body: bytes, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.v2.get_service(name)
        if method == "PATCH":
            return self.v2.update_service(name, self._json(body))
        if method == "DELETE":
            return self.v2.delete_service(name)
        raise self._not_allowed(method, "GET, PATCH or DELETE")

    def _v2_revisions(self, method: str, query: dict, body: bytes, service: str) -> dict[str, Any]:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        return self.v2.list_revisions(service)

    def _v2_revision(self, method: str, query: dict, body: bytes, service: str, name: str) -> dict[str, Any]:
        if method == "GET":
            return self.v2.get_revision(service, name)
        if method == "DELETE":
            return self.v2.delete_revision(service, name)
        raise self._not_allowed(method, "GET or DELETE")

    def _v2_operation(self, method: str, query: dict, body: bytes, identifier: str,
                      verb: str | None) -> dict[str, Any]:
        if verb and method == "POST":
            return self.v2.wait(identifier, self._json(body))
        if not verb and method == "GET":
            return self.v2.operation(identifier)
        raise self._not_allowed(method, "GET, or POST to :wait")

    def _health(self, method: str, query: dict, body: bytes) -> dict[str, Any]:
        return {"status": "ok", "project": self.cloud_run.project, "region": self.cloud_run.region}


class Handler(BaseHTTPRequestHandler):
    api: Api  # set on the subclass that `serve` makes
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self) -> None:
        length = self.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            self.close_connection = True
            error = RequestTooLarge(f"request body of {length} bytes is larger than {MAX_BODY_BYTES} bytes")
            self._send(error.http_status, error.body())
            return
        body = self.rfile.read(int(length)) if length else b""
        metadata = self.api.cloud_run.metadata
        path = urllib.parse.urlsplit(self.path).path
        if is_metadata_request(path, self.headers.get("Metadata-Flavor")):
            answer = metadata.answer(self.path, self.headers.get("Metadata-Flavor"))
            self.send_response(answer.status)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        if not metadata.accepts(self.headers.get("Authorization")):
            error = Unauthenticated("Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                    "login cookie or other valid authentication credential (a token this local "
                                    "Cloud Run's metadata server made, not expired).")
            self._send(error.http_status, error.body())
            return
        status, document = self.api.handle(self.command, self.path, body)
        self._send(status, document)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def do_CONNECT(self) -> None:  # noqa: N802
        self.close_connection = True
        error = ResourceNotFound(f"{self.path}: this local Cloud Run answers only the APIs gcloud is pointed at with "
                         f"api_endpoint_overrides (run, cloudresourcemanager, monitoring, logging)")
        self._send(error.http_status, error.body())

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


def make_server(api: Api, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"api": api})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
