"""The console's HTTP face (Flask): the page and its assets, read-only JSON views, and three guarded actions.

  GET  /                      the page (every script and style it uses is served from /static: no CDN)
  GET  /api/state?service=    split, revisions, rollout, records, shadow          (view.View.state)
  GET  /api/figures?service=&minutes=15   per-revision req/s, 5xx rate, p50, p99 (timeSeries.list)
  GET  /api/report.png        the report's decision-region picture, when `make report` has written one
  POST /api/split     {"service", "split": "svc=90 lin_svc=10"}    as `make traffic SPLIT=...`
  POST /api/rollback  {"service"}                                  as `make rollback` (aborts a rollout)
  POST /api/promote   {"service"}                                  as `make promote`
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from iris_tools.console import actions
from iris_tools.console.errors import BadRequest, Missing, as_response
from iris_tools.console.guard import check_change, check_host
from iris_tools.console.view import View

STATIC = Path(__file__).parent / "static"
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Nothing from anywhere else: scripts, styles, images and requests all stay on this origin.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def create_app(view: View, port: int = 0, token: str | None = None) -> Flask:
    """`port`: the one the console is reached at (set app.config["CONSOLE_PORT"] once bound, when it is 0)."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["CONSOLE_TOKEN"] = token = token or secrets.token_urlsafe(32)
    app.config["CONSOLE_PORT"] = port

    @app.before_request
    def guard() -> None:
        check_host(request.headers, app.config["CONSOLE_PORT"])
        if request.method not in ("GET", "HEAD"):
            check_change(request.headers, app.config["CONSOLE_PORT"], token)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(Exception)
    def failed(exc: Exception) -> tuple[Response, int]:
        if isinstance(exc, HTTPException):  # Flask's own 404/405: JSON too
            body = {"error": {"code": exc.code, "status": exc.name.upper().replace(" ", "_"),
                              "message": exc.description}}
            return jsonify(body), exc.code or 500
        body, status = as_response(exc)
        if status >= 500:
            app.logger.exception("%s %s failed", request.method, request.path)
        return jsonify(body), status

    def service_arg(value: Any) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not SERVICE_NAME.fullmatch(value):
            raise BadRequest(f"service {value!r} is not a Cloud Run service name")
        return value

    def body() -> dict[str, Any]:
        document = request.get_json(silent=True)
        if not isinstance(document, dict):
            raise BadRequest("the body must be a JSON object")
        return document

    @app.get("/")
    def page() -> Response:
        html = (STATIC / "index.html").read_text().replace("__CONSOLE_TOKEN__", token)
        return Response(html, mimetype="text/html")

    @app.get("/api/state")
    def state() -> Response:
        return jsonify(view.state(service_arg(request.args.get("service"))))

    @app.get("/api/figures")
    def figures() -> Response:
        try:
            minutes = float(request.args.get("minutes", "15"))
        except ValueError:
            raise BadRequest("minutes must be a number") from None
        if not 1 <= minutes <= 360:
            raise BadRequest("minutes must be between 1 and 360")
        return jsonify(view.figures(service_arg(request.args.get("service")), minutes))

    @app.get("/api/report.png")
    def report_png() -> Response:
        path = view.report_png()
        if path is None:
            raise Missing("no report picture yet: `make report` writes one")
        return send_file(path, mimetype="image/png", max_age=0)

    @app.post("/api/split")
    def split() -> Response:
        document = body()
        text = document.get("split")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest('split must be text like "svc=90 lin_svc=10" (models or revisions)')
        target = view.for_service(service_arg(document.get("service")))
        return jsonify(actions.set_traffic(target, text))

    @app.post("/api/rollback")
    def rollback() -> Response:
        return jsonify(actions.roll_back(view.for_service(service_arg(body().get("service")))))

    @app.post("/api/promote")
    def promote() -> Response:
        return jsonify(actions.promote_paused(view.for_service(service_arg(body().get("service")))))

    return app
