"""The web layer: one Functions Framework HTTP function per model version.

`functions/<model>/main.py` calls `serve_model(Path(__file__).parent)` at import, so
the model is loaded and verified when the server starts, never on a request. A
model's name is its folder's: one name for the folder, the image tag and the answers.
Every error, ours or Flask's, leaves here as the same JSON shape.
"""

from __future__ import annotations

import os

# One OpenMP thread per request thread, unless the environment says otherwise: set before scikit-learn (or a booster
# library) loads its OpenMP runtime. A request's few rows gain nothing from a thread team, and a team per request
# thread spins on the instance's cores (a HistGradientBoostingClassifier served 86 requests/s at one connection with
# teams of 2 threads, 354 with one). The server's threads and Cloud Run's instances are the parallelism.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import functions_framework
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import Map, Rule

from shared.config import Settings
from shared.errors import InvalidInput, MethodNotAllowed, ModelLoadError, NotFound, PayloadTooLarge, ServingError
from shared.feedback import feedback_answer, parse_feedback
from shared.feedback_signature import ENVIRON_KEY as SIGNATURE_KEY
from shared.feedback_signature import check as check_signature
from shared.inputs import plain_query
from shared.model import ServedModel
from shared.prediction_log import PredictionLog
from shared.request_id import ANSWER_HEADER
from shared.request_id import HEADER as ID_HEADER
from shared.request_id import RequestId
from shared.service import Service
from shared.v2 import HEADER_LENGTH, OpenInference, Reply

log = logging.getLogger(__name__)

View = Callable[..., "dict[str, Any] | str | Reply"]
PREDICTION_ENDPOINTS = {"root", "v2_infer"}

# No path ends in "z": Cloud Run reserves some of those (/healthz among them).
ROUTES = Map([
    Rule("/", endpoint="root", methods=["GET", "POST"]),
    Rule("/metadata", endpoint="metadata", methods=["GET"]),
    Rule("/health", endpoint="health", methods=["GET"]),
    Rule("/feedback", endpoint="feedback", methods=["POST"]),
    Rule("/v2", endpoint="v2_server_metadata", methods=["GET"]),
    Rule("/v2/health/live", endpoint="v2_live", methods=["GET"]),
    Rule("/v2/health/ready", endpoint="v2_ready", methods=["GET"]),
    Rule("/v2/models/<name>", endpoint="v2_model_metadata", methods=["GET"]),
    Rule("/v2/models/<name>/versions/<version>", endpoint="v2_model_metadata", methods=["GET"]),
    Rule("/v2/models/<name>/ready", endpoint="v2_model_ready", methods=["GET"]),
    Rule("/v2/models/<name>/versions/<version>/ready", endpoint="v2_model_ready", methods=["GET"]),
    Rule("/v2/models/<name>/infer", endpoint="v2_infer", methods=["POST"]),
    Rule("/v2/models/<name>/versions/<version>/infer", endpoint="v2_infer", methods=["POST"]),
], strict_slashes=False)


# What an oversized body is read and dropped up to before the 413 is sent: Cloud Run's front end refuses an HTTP/1
# request over 32 MiB itself (the local Cloud Run's Envoy does too), so below that the whole body is read.
DRAIN_BYTES = 32 * 1024 * 1024
_DRAIN_CHUNK = 256 * 1024


def read_body(request: flask.Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes, whether its length is declared or it comes chunked.

    functions-framework reads whatever body is left after every response (an after_request
    hook that calls get_data()). Werkzeug caches what get_data() returns in `_cached_data`:
    setting it keeps that hook from buffering an oversized body in memory.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        _drop_the_rest(request)
        raise PayloadTooLarge(f"body: {declared} bytes, more than the limit of {limit} (MAX_REQUEST_BYTES)",
                              field="body")
    if declared is not None:  # read from the server's own stream: werkzeug's wrapper of it costs microseconds
        body = request.environ["wsgi.input"].read(declared) if declared else b""
        if len(body) < declared:
            raise InvalidInput(f"body: {len(body)} of the {declared} bytes its Content-Length declares arrived",
                               field="body", code="incomplete_body")
        request._cached_data = body
        return body
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        _drop_the_rest(request)
        raise PayloadTooLarge(f"body: more than the limit of {limit} bytes (MAX_REQUEST_BYTES)", field="body")
    request._cached_data = body
    return body


def _drop_the_rest(request: flask.Request) -> None:
    """Read what is left of an oversized body (up to DRAIN_BYTES) a chunk at a time and drop it, before the 413.

    A server that answers and closes with the body still unread makes the kernel reset the connection, and a
    reset can reach the proxy before the answer does: Envoy then says 503 for a running revision. Read to its
    end, the body costs a little time and no memory, and the 413 arrives whole. A client that leaves mid-body
    ends the read (werkzeug raises ClientDisconnected, a 400 nobody receives)."""
    request._cached_data = b""
    left = DRAIN_BYTES
    while left > 0:
        chunk = request.stream.read(min(_DRAIN_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)


_ID_KEY = "iris.request_id"  # where a request's id is kept in its WSGI environ (cheaper to reach than flask.g)


def request_id(environ: "dict[str, Any] | None" = None) -> RequestId:
    """This request's id: made once per request (the view and the error handlers answer with the same one)."""
    if environ is None:
        environ = flask.request.environ
    found = environ.get(_ID_KEY)
    if found is None:
        found = environ[_ID_KEY] = RequestId.of(environ)
    return found


def views_of(service: Service, v2: OpenInference, predictions: PredictionLog) -> dict[str, View]:
    """Endpoint -> view(request, **path arguments)."""
    limit = service.settings.max_request_bytes
    classes = None if service.model.manifest.regressor else service.model.manifest.class_names

    def feedback(request: flask.Request) -> dict[str, Any]:
        body = read_body(request, limit)
        check_signature(request.environ.get(SIGNATURE_KEY), body, service.settings.feedback_keys)
        if service.model.manifest.multi_output:
            raise InvalidInput(f"model {service.model.name!r} answers {service.model.manifest.outputs} outputs a row; "
                               f"labels are taken for a model of one output", field="body", code="not_supported")
        labels = parse_feedback(body, classes, service.settings.max_batch_rows)
        predictions.feedback(labels, request_id())
        return feedback_answer(labels)

    def root(request: flask.Request) -> "dict[str, Any] | str":
        query_string = request.environ.get("QUERY_STRING", "")
        if request.method == "GET":
            answer = service.answer_query(query_string)
            if answer is not None:
                return answer
        params = plain_query(query_string)
        if params is None:
            params = request.args.to_dict(flat=False)
        if request.method == "POST":
            return service.predict_batch(read_body(request, limit), request.content_type, params)
        return service.predict_query(params)

    def infer(request: flask.Request, name: str, version: str | None = None) -> Reply:
        return v2.infer(name, version, read_body(request, limit), request.headers.get(HEADER_LENGTH),
                        request_id().answer)

    return {
        "root": root,
        "metadata": lambda request: service.metadata(),
        "health": lambda request: service.health(),
        "feedback": feedback,
        "v2_server_metadata": lambda request: v2.server_metadata(),
        "v2_live": lambda request: v2.live(),
        "v2_ready": lambda request: v2.ready(),
        "v2_model_metadata": lambda request, name, version=None: v2.model_metadata(name, version),
        "v2_model_ready": lambda request, name, version=None: v2.model_ready(name, version),
        "v2_infer": infer,
    }


class _OwnHeaders(Headers):
    """Response headers this module made itself: constant names, values that cannot hold a newline (ids checked
    against their pattern, numbers, model and revision names). werkzeug checks each header it is handed for a
    newline, a few microseconds a request for headers it cannot find one in; these are taken as they are."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._list = pairs


Pairs = list[tuple[str, str]]


def _response(body: "str | bytes", status: int, headers: Pairs, content_type: str = "application/json") -> flask.Response:
    return flask.Response(body, status=status, headers=_OwnHeaders([("Content-Type", content_type), *headers]))


def _json_response(body: dict[str, Any], status: int, headers: Pairs) -> flask.Response:
    return _response(json_text(body), status, headers)


# json.dumps makes an encoder per call when an argument differs from its defaults (allow_nan does): made once here.
_ENCODE = json.JSONEncoder(allow_nan=False).encode


def json_text(document: Any) -> str:
    """JSON as the standard has it: a NaN (a model's answer out of its range, an IsotonicRegression's) is null."""
    try:
        return _ENCODE(document)  # checked in C: the common case costs nothing more
    except ValueError:
        return _ENCODE(_nan_as_null(document))


def _nan_as_null(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {key: _nan_as_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_null(item) for item in value]
    return value


def _respond(result: "dict[str, Any] | str | Reply", headers: Pairs) -> flask.Response:
    """A view's answer as a 200: a dict as JSON, JSON already made (a str), or a V2 reply."""
    if type(result) is str:
        return _response(result, 200, headers)
    if not isinstance(result, Reply):
        return _json_response(result, 200, headers)
    if not result.binary:
        return _json_response(result.document, 200, headers)
    document = json_text(result.document).encode()
    return _response(document + result.binary, 200, [*headers, (HEADER_LENGTH, str(len(document)))],
                     "application/octet-stream")


def _install_error_handlers(headers: dict[str, str]) -> None:
    register = functions_framework.errorhandler

    def answered_with(extra: dict[str, str]) -> Pairs:
        identity = request_id()
        return [*headers.items(), (ID_HEADER, identity.value), (ANSWER_HEADER, identity.answer), *extra.items()]

    @register(ServingError)
    def _serving_error(error: ServingError) -> flask.Response:
        return _json_response(error.body(), error.status, answered_with(error.headers()))

    @register(HTTPException)
    def _http_error(error: HTTPException) -> flask.Response:
        status = error.code or 500
        body = {"error": error.description or error.name, "code": error.name.lower().replace(" ", "_")}
        return _json_response(body, status, answered_with({}))

    @register(Exception)
    def _unexpected(error: Exception) -> flask.Response:
        log.exception("unexpected error while serving %s", flask.request.path)
        return _json_response({"error": "internal error; see the server log", "code": "internal_error"}, 500,
                              answered_with({}))


def serve_model(directory: Path, settings: Settings | None = None) -> Callable[[flask.Request], flask.Response]:
    """Load and verify the model in `directory` (its name is the folder's); return its HTTP function.

    A model that fails a check stops the process with a message naming the check.
    """
    directory = Path(directory)
    name = directory.resolve().name
    try:
        settings = settings or Settings.from_env()
        model = ServedModel.load(directory, name, settings.batch_size, settings.batch_wait_ms,
                                 settings.predictor_process)
    except ModelLoadError as exc:
        print(f"refusing to serve model {name!r}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("serving model %s (%s, sha256 %s) as revision %s", name, model.manifest.algorithm,
             model.manifest.sha256[:12], settings.revision,
             extra={"fields": {"model": name, "revision": settings.revision}})
    headers = {"X-Model": name}
    if settings.revision:
        headers["X-Revision"] = settings.revision
    _install_error_handlers(headers)
    predictions = PredictionLog(name, settings.revision, settings.log_predictions, settings.log_max_rows,
                                project=settings.project, service=settings.service,
                                classes=not model.manifest.regressor)
    views = views_of(Service(model, settings, predictions.observe),
                     OpenInference(model, settings, predictions.observe), predictions)
    routes = ROUTES.bind("")
    tutorial_get = views["root"]

    fixed = list(headers.items())

    def answered(environ: dict[str, Any], result: "dict[str, Any] | str | Reply", identity: RequestId) -> flask.Response:
        """A prediction's response: its id, its handler time in Server-Timing, and its log line."""
        response = _respond(result, [*fixed, (ID_HEADER, identity.value), (ANSWER_HEADER, identity.answer),
                                     ("Server-Timing", f"predict;dur={predictions.elapsed() * 1000:.3f}")])
        predictions.end(environ, response.status_code, identity, model.last_batch_rows if model.batches else 0)
        return response

    def predict_batched(request: flask.Request) -> flask.Response:
        """A model whose requests' rows meet in one call: a prediction request is announced as it begins, so a
        batch being formed may wait (BATCH_WAIT_MS) for its rows, and withdrawn when it ends."""
        path = request.environ.get("PATH_INFO", "")
        if path != "/" and not path.endswith("/infer"):
            return predict(request)
        model.announce()
        try:
            return predict(request)
        finally:
            model.withdraw()

    def predict(request: flask.Request) -> flask.Response:
        predictions.begin()
        environ = request.environ
        identity = request_id(environ)
        if environ.get("PATH_INFO") == "/" and request.method in ("GET", "POST"):  # the hot path: no route table
            return answered(environ, tutorial_get(request), identity)
        try:
            endpoint, arguments = routes.match(request.path, request.method)
        except WerkzeugNotFound:
            raise NotFound(f"{request.path}: no such route; try GET /?length=5.8&width=3.4, POST /, GET /metadata, "
                           f"GET /health or the V2 routes under /v2", field="path") from None
        except WerkzeugMethodNotAllowed as exc:
            allowed = sorted(set(exc.valid_methods or []) - {"HEAD"})
            raise MethodNotAllowed(request.method, request.path, allowed) from None
        result = views[endpoint](request, **arguments)
        if endpoint in PREDICTION_ENDPOINTS:
            return answered(environ, result, identity)
        return _respond(result, [*fixed, (ID_HEADER, identity.value), (ANSWER_HEADER, identity.answer)])

    return predict_batched if model.batches else predict
