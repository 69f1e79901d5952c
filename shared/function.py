"""The web layer: one Functions Framework HTTP function per model version.

`functions/<model>/main.py` calls `serve_model(name, directory)` at import, so the
model is loaded and verified when the server starts, never on a request.
Every error, ours or Flask's, leaves here as the same JSON shape.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from shared.config import Settings
from shared.errors import MethodNotAllowed, ModelLoadError, NotFound, ServingError
from shared.model import ServedModel
from shared.service import Service

log = logging.getLogger(__name__)

Route = Callable[[flask.Request], dict[str, Any]]


def _json_response(body: dict[str, Any], status: int, headers: dict[str, str]) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def routes_of(service: Service) -> dict[str, dict[str, Route]]:
    """Path -> method -> route. No path ends in "z": Cloud Run reserves some of those."""
    return {
        "/": {
            "GET": lambda request: service.predict_query(request.args.to_dict(flat=False)),
            "POST": lambda request: _read_batch(service, request),
        },
        "/metadata": {"GET": lambda request: service.metadata()},
        "/health": {"GET": lambda request: service.health()},
    }


def _read_batch(service: Service, request: flask.Request) -> dict[str, Any]:
    service.check_body_size(request.content_length)
    return service.predict_batch(request.get_data(), request.content_type, request.args.to_dict(flat=False))


def _install_error_handlers(headers: dict[str, str]) -> None:
    register = functions_framework.errorhandler

    @register(ServingError)
    def _serving_error(error: ServingError) -> flask.Response:
        return _json_response(error.body(), error.status, {**headers, **error.headers()})

    @register(HTTPException)
    def _http_error(error: HTTPException) -> flask.Response:
        status = error.code or 500
        body = {"error": error.description or error.name, "code": error.name.lower().replace(" ", "_")}
        return _json_response(body, status, headers)

    @register(Exception)
    def _unexpected(error: Exception) -> flask.Response:
        log.exception("unexpected error while serving %s", flask.request.path)
        return _json_response({"error": "internal error; see the server log", "code": "internal_error"}, 500, headers)


def serve_model(name: str, directory: Path, settings: Settings | None = None) -> Callable[[flask.Request], flask.Response]:
    """Load and verify model `name` from `directory`; return its HTTP function.

    A model that fails a check stops the process with a message naming the check.
    """
    try:
        settings = settings or Settings.from_env()
        service = Service(ServedModel.load(directory, name), settings)
    except ModelLoadError as exc:
        print(f"refusing to serve model {name!r}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    manifest = service.model.manifest
    log.info("serving model %s (%s, sha256 %s) as revision %s", name, manifest.algorithm, manifest.sha256[:12],
             settings.revision, extra={"fields": {"model": name, "revision": settings.revision}})
    headers = {"X-Model": name}
    if settings.revision:
        headers["X-Revision"] = settings.revision
    _install_error_handlers(headers)
    routes = routes_of(service)

    def predict(request: flask.Request) -> flask.Response:
        path = request.path.rstrip("/") or "/"
        methods = routes.get(path)
        if methods is None:
            raise NotFound(f"{request.path}: no such route; try GET /?length=5.8&width=3.4, POST /, GET /metadata or GET /health", field="path")
        method = "GET" if request.method == "HEAD" else request.method
        route = methods.get(method)
        if route is None:
            raise MethodNotAllowed(request.method, path, sorted(methods))
        return _json_response(route(request), 200, headers)

    return predict
