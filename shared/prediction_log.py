"""One structured log line per answered prediction, in Cloud Logging's JSON shape, on stdout.

    {"severity": "INFO", "message": "prediction svc GET /: versicolor",
     "logging.googleapis.com/labels": {"model": "svc", "revision": "iris-00001-abc"},
     "kind": "prediction", "model": "svc", "revision": "iris-00001-abc", "route": "GET /",
     "rows": 1, "inputs": [[5.8, 3.4]], "predictions": ["versicolor"], "latency_ms": 0.41,
     "httpRequest": {"requestMethod": "GET", "requestUrl": "/?length=5.8&width=3.4", "status": 200,
                     "latency": "0.000410s", "userAgent": "curl/7.88.1", "remoteIp": "127.0.0.1",
                     "protocol": "HTTP/1.1"}}

Cloud Run sends stdout to Cloud Logging, which parses each line as a structured entry (read them
with `gcloud logging read 'jsonPayload.kind="prediction"'`); the local Cloud Run keeps them in each
revision's log. LOG_PREDICTIONS is the fraction of predictions logged (default 1, all; 0 turns it
off), decided per request; LOG_MAX_ROWS bounds the rows one line carries (`rows` says how many the
request had). Each line is written with one call and flushed: a file reader sees it at once.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import flask

Observer = Callable[[Any, Sequence[str]], None]

_second: tuple[int, str] = (-1, "")  # the last whole second and its text, replaced whole (threads read it)


def _now() -> str:
    """RFC 3339 in UTC: Cloud Logging takes a structured line's `time` as the entry's timestamp."""
    global _second
    seconds = time.time()
    whole = int(seconds)
    cached = _second
    if whole != cached[0]:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((seconds - whole) * 1e6):06d}Z"


class PredictionLog:
    def __init__(self, model: str, revision: str | None, fraction: float, max_rows: int,
                 stream: TextIO | None = None) -> None:
        self.model = model
        self.labels = {"model": model, "revision": revision}
        self._fixed = (f'"logging.googleapis.com/labels":{json.dumps(self.labels)},"kind":"prediction",'
                       f'"model":{json.dumps(model)},"revision":{json.dumps(revision)}')
        self.fraction = fraction
        self.max_rows = max_rows
        self.stream = stream
        self._local = threading.local()
        self._lock = threading.Lock()

    def begin(self) -> None:
        """At the start of a request: sample it, and start its clock."""
        local = self._local
        local.sampled = self.fraction >= 1.0 or (self.fraction > 0.0 and random.random() < self.fraction)
        local.observed = None
        local.started = time.perf_counter()

    def observe(self, rows: Any, predictions: Sequence[str]) -> None:
        """Called by the routes with what they answered (only kept when the request was sampled)."""
        if getattr(self._local, "sampled", False):
            self._local.observed = (rows, predictions)

    def elapsed(self) -> float:
        return time.perf_counter() - getattr(self._local, "started", time.perf_counter())

    def end(self, request: flask.Request, status: int) -> None:
        """After the response is made: one line, if this request was sampled and answered a prediction."""
        local = self._local
        observed = getattr(local, "observed", None)
        if observed is None:
            return
        local.observed = None
        latency = self.elapsed()
        rows, predictions = observed
        rows = rows.tolist() if hasattr(rows, "tolist") else [list(row) for row in rows]
        route = f"{request.method} {request.path}"
        summary = predictions[0] if len(predictions) == 1 else f"{len(predictions)} rows"
        # The fixed parts are encoded once (__init__); only what varies is encoded per line: the line
        # costs a few tens of microseconds, not a full json.dumps of a nested document.
        dumps = json.dumps
        line = (f'{{"time":"{_now()}","severity":"INFO","message":{dumps(f"prediction {self.model} {route}: {summary}")},'
                f'{self._fixed},"route":{dumps(route)},"rows":{len(predictions)},'
                f'"inputs":{dumps(rows[: self.max_rows])},"predictions":{dumps(list(predictions[: self.max_rows]))},'
                f'"latency_ms":{round(latency * 1000, 3)},'
                f'"httpRequest":{{"requestMethod":{dumps(request.method)},'
                f'"requestUrl":{dumps(request.full_path.rstrip("?"))},"status":{status},'
                f'"latency":"{latency:.6f}s","userAgent":{dumps(request.headers.get("User-Agent", ""))},'
                f'"remoteIp":{dumps(request.remote_addr or "")},'
                f'"protocol":{dumps(request.environ.get("SERVER_PROTOCOL", ""))}}}'
                + (',"truncated":true' if len(predictions) > self.max_rows else "") + "}\n")
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()
