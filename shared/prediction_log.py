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
request had). Each line is written whole with one write(2) before the request ends: a file reader
sees it at once, and a SIGTERM or a crash after the response loses no line already answered.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
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
        count = len(predictions)
        route = f"{request.method} {request.path}"
        summary = predictions[0] if count == 1 else f"{count} rows"
        # Only what varies is encoded per line, each part by the C encoder json.dumps itself ends in, and
        # the line goes out in one write: a few microseconds, not a json.dumps of a nested document.
        line = (f'{{"time":"{_now()}","severity":"INFO","message":{_text(f"prediction {self.model} {route}: {summary}")},'
                f'{self._fixed},"route":{_text(route)},"rows":{count},'
                f'"inputs":{_rows(rows[: self.max_rows])},"predictions":{_names(predictions[: self.max_rows])},'
                f'"latency_ms":{round(latency * 1000, 3)},'
                f'"httpRequest":{{"requestMethod":{_text(request.method)},'
                f'"requestUrl":{_text(request.full_path.rstrip("?"))},"status":{status},'
                f'"latency":"{latency:.6f}s","userAgent":{_text(request.headers.get("User-Agent", ""))},'
                f'"remoteIp":{_text(request.remote_addr or "")},'
                f'"protocol":{_text(request.environ.get("SERVER_PROTOCOL", ""))}}}'
                + (',"truncated":true' if count > self.max_rows else "") + "}\n")
        self._write(line)

    def _write(self, line: str) -> None:
        """One line, whole, at once: with one write(2) to stdout's descriptor (a reader sees whole lines,
        never two interleaved), or to the stream given."""
        stream = self.stream or sys.stdout
        with self._lock:
            try:
                descriptor = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not a file (a test's capture): write and flush it
                stream.write(line)
                stream.flush()
                return
            stream.flush()  # anything written through the stream before goes first
            data = line.encode()
            while data:
                data = data[os.write(descriptor, data):]


def _text(value: str) -> str:
    return encode_basestring_ascii(value)


def _names(names: Sequence[str]) -> str:
    return "[" + ",".join(map(encode_basestring_ascii, names)) + "]"


def _rows(rows: Any) -> str:
    """The rows as JSON: floats as json.dumps writes them (their repr), without its per-call overhead."""
    rows = rows.tolist() if hasattr(rows, "tolist") else rows
    try:
        return "[" + ",".join("[" + ",".join(map(float.__repr__, row)) + "]" for row in rows) + "]"
    except TypeError:  # not all floats (a V2 tensor of integers or booleans): the general encoder
        return json.dumps([list(row) for row in rows])
