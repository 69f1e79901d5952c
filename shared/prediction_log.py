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

def _now() -> str:
    """RFC 3339 in UTC: Cloud Logging takes a structured line's `time` as the entry's timestamp."""
    seconds = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


class PredictionLog:
    def __init__(self, model: str, revision: str | None, fraction: float, max_rows: int,
                 stream: TextIO | None = None) -> None:
        self.labels = {"model": model, "revision": revision}
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
        entry = {
            "time": _now(),
            "severity": "INFO",
            "message": f"prediction {self.labels['model']} {route}: "
                       + (predictions[0] if len(predictions) == 1 else f"{len(predictions)} rows"),
            "logging.googleapis.com/labels": self.labels,
            "kind": "prediction", **self.labels, "route": route, "rows": len(predictions),
            "inputs": rows[: self.max_rows], "predictions": list(predictions[: self.max_rows]),
            "latency_ms": round(latency * 1000, 3),
            "httpRequest": {"requestMethod": request.method, "requestUrl": request.full_path.rstrip("?"),
                            "status": status, "latency": f"{latency:.6f}s",
                            "userAgent": request.headers.get("User-Agent", ""),
                            "remoteIp": request.remote_addr or "", "protocol": request.environ.get("SERVER_PROTOCOL", "")},
        }
        if len(predictions) > self.max_rows:
            entry["truncated"] = True
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()
