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
request had). Lines are written whole, in batches, by one writer thread (`LineWriter`): a reader
sees a line within tens of milliseconds, and a SIGTERM or a failed request loses no line.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO


from shared.artifact import class_key
from shared.request_id import RequestId

# rows, the class name (or a regressor's number) of each, and (when a client asked for probabilities) the top class's
Observer = Callable[..., None]
PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is atomic

_second: tuple[int, str] = (-1, "")  # the last whole second and its text, replaced whole (threads read it)


REPLAY_HEADER = "X-Replay"  # a tool's own request (a shadow replay, a warm-up): never counted as a user's answer
_REPLAY = re.compile(r"[a-z][a-z-]{0,31}")
_REPLAY_KEY = "HTTP_X_REPLAY"  # as the WSGI environ holds it


def _replay(environ: dict[str, Any]) -> str:
    """`"replay":"shadow",` for a request a tool marked as its own (X-Replay: shadow, warm-up, ...)."""
    kind = environ.get(_REPLAY_KEY)
    return f'"replay":"{kind}",' if kind and _REPLAY.fullmatch(kind) else ""


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
                 stream: TextIO | None = None, project: str | None = None, service: str | None = None,
                 classes: bool = True) -> None:
        self.model = model
        self.classes = classes  # a classifier's answers: classes, logged by their text
        self.project = project  # for `logging.googleapis.com/trace` (projects/<project>/traces/<trace>)
        self.labels = {"model": model, "revision": revision}
        self._identity = (f'"logging.googleapis.com/labels":{json.dumps(self.labels)},'
                          f'"model":{json.dumps(model)},"revision":{json.dumps(revision)}'
                          + (f',"service":{json.dumps(service)}' if service else ""))
        self._fixed = f'"kind":"prediction",{self._identity}'
        self.fraction = fraction
        self.max_rows = max_rows
        self.stream = stream
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer: LineWriter | None = None
        self._routes: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._texts: dict[str, str] = {}

    def begin(self) -> None:
        """At the start of a request (in the thread that serves it): sample it, and start its clock."""
        local = self._local
        local.sampled = self.fraction >= 1.0 or (self.fraction > 0.0 and random.random() < self.fraction)
        local.observed = None
        local.started = time.perf_counter()

    def observe(self, rows: Any, predictions: Sequence[Any], confidence: Sequence[float] | None = None) -> None:
        """Called by the routes with what they answered (only kept when the request was sampled); `confidence`, the
        probability of each row's top class, when the client asked for probabilities."""
        if getattr(self._local, "sampled", False):
            self._local.observed = (rows, predictions, confidence)

    def elapsed(self) -> float:
        return time.perf_counter() - getattr(self._local, "started", time.perf_counter())

    def feedback(self, labels: Sequence[Any], identity: RequestId) -> None:
        """One line for an accepted /feedback body, whatever LOG_PREDICTIONS says (labels are never sampled)."""
        entries = ",".join(f'{{"id":{_text(entry.id)},"label":'
                           f'{_text(entry.label) if isinstance(entry.label, str) else repr(float(entry.label))}}}'
                           for entry in labels)
        message = _text(f"feedback {self.model}: {len(labels)} label(s)")
        self._write(f'{{"time":"{_now()}","severity":"INFO","message":{message},"kind":"feedback",{self._identity},'
                    f'"request_id":{_text(identity.value)},"count":{len(labels)},"labels":[{entries}]}}\n')

    def _correlation(self, identity: RequestId | None) -> str:
        """The answer's id (what a label names), the request's (the client's, for tracing), and its trace as Cloud
        Logging correlates it (when there is one and the project is known)."""
        if identity is None:
            return ""
        trace = identity.trace_resource(self.project)
        return f'"answer_id":"{identity.answer}","request_id":{_text(identity.value)},' + (f'"logging.googleapis.com/trace":{_text(trace)},'
                                                             if trace else "")

    def _route(self, method: str, path: str) -> tuple[str, str, str]:
        """A route's encoded parts (its "METHOD /path", the message's start, the method), made once a route."""
        parts = self._routes.get((method, path))
        if parts is None:
            parts = (_text(f"{method} {path}"), f"prediction {self.model} {method} {path}: ", _text(method))
            if len(self._routes) < 64:  # prediction routes are few; anything else is encoded each time
                self._routes[(method, path)] = parts
        return parts

    def _client_text(self, value: str) -> str:
        """A request field that repeats (its user agent, its protocol), encoded once for the first 256 seen."""
        found = self._texts.get(value)
        if found is None:
            found = _text(value)
            if len(self._texts) < 256:
                self._texts[value] = found
        return found

    def end(self, environ: dict[str, Any], status: int, identity: RequestId | None = None, batch_rows: int = 0) -> None:
        """After the response is made: one line, if this request was sampled and answered a prediction. The
        request's fields are read from its WSGI environ (werkzeug's Request views cost microseconds each).
        `batch_rows`: the rows of the estimator call that answered it, logged when other requests' rows shared it."""
        local = self._local
        observed = local.observed
        if observed is None:
            return
        local.observed = None
        latency = time.perf_counter() - local.started
        rows, predictions, confidence = observed
        count = len(predictions)
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        route, message, method_text = self._route(method, path)
        summary = predictions[0] if count == 1 else f"{count} rows"
        # Only what varies is encoded per line, each part by the C encoder json.dumps itself ends in: a
        # few microseconds, not a json.dumps of a nested document.
        line = (f'{{"time":"{_now()}","severity":"INFO","message":{_text(f"{message}{summary}")},'
                f'{self._fixed},"route":{route},"rows":{count},'
                f'"inputs":{_rows(rows[: self.max_rows])},'
                f'"predictions":{_names(predictions[: self.max_rows], self.classes)},'
                + (f'"confidence":[{",".join(map(float.__repr__, confidence[: self.max_rows]))}],'
                   if confidence is not None else "") +
                (f'"batch_rows":{batch_rows},' if batch_rows > count else "") +
                f'"latency_ms":{latency * 1000:.3f},{self._correlation(identity)}{_replay(environ)}'
                f'"httpRequest":{{"requestMethod":{method_text},'
                f'"requestUrl":{_text(f"{path}?{query}" if query else path)},"status":{status},'
                f'"latency":"{latency:.6f}s","userAgent":{self._client_text(environ.get("HTTP_USER_AGENT", ""))},'
                f'"remoteIp":{_text(environ.get("REMOTE_ADDR") or "")},'
                f'"protocol":{self._client_text(environ.get("SERVER_PROTOCOL", ""))}}}'
                + (',"truncated":true' if count > self.max_rows else "") + "}\n")
        self._write(line)

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stdout
        writer = self._writer
        if writer is not None and writer.stream is stream and writer.pid == os.getpid():
            writer.put(line)  # the common case: the same stdout as the last line, in the same process
            return
        try:
            descriptor = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's capture): write and flush it
            with self._lock:
                stream.write(line)
                stream.flush()
            return
        stream.flush()  # anything written through the stream before goes first
        writer = self._writer = LineWriter.for_descriptor(descriptor)
        writer.stream = stream
        writer.put(line)


class LineWriter:
    """Lines from many request threads, written by one thread in batches of whole lines.

    A write(2) releases the GIL, and a request thread that gives it up in a busy server waits for it
    again behind the others: a write per line cost about a tenth of the requests/s at 8 connections.
    Here a request thread only appends its line; the writer thread writes what has gathered every
    INTERVAL_S (sooner past MAX_PENDING lines), each batch in writes of whole lines up to PIPE_BUF bytes.
    Nothing is lost on a clean exit: gunicorn's SIGTERM (graceful stop) and Ctrl-C end in a normal
    interpreter exit, and `flush` runs at exit. A request that fails after its answer was logged
    keeps its line, queued already. A SIGKILL can lose at most the last INTERVAL_S of lines.
    """

    INTERVAL_S = 0.02
    MAX_PENDING = 512
    _by_descriptor: dict[int, "LineWriter"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.stream: Any = None  # the stream whose descriptor this is, as the last user saw it
        self.pid = os.getpid()  # a forked worker starts a writer of its own
        self._pending: deque[str] = deque()  # appended and taken without a lock: each is atomic on a deque
        self._write_lock = threading.Lock()  # batches go out in order
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    @classmethod
    def for_descriptor(cls, descriptor: int) -> "LineWriter":
        with cls._registry_lock:
            writer = cls._by_descriptor.get(descriptor)
            if writer is None or writer.pid != os.getpid():
                writer = cls._by_descriptor[descriptor] = cls(descriptor)
            return writer

    def put(self, line: str) -> None:
        pending = self._pending
        pending.append(line)
        if len(pending) >= self.MAX_PENDING:
            self._wake.set()

    def flush(self) -> None:
        with self._write_lock:
            pending = self._pending
            lines = [pending.popleft() for _ in range(len(pending))]  # what is there now; later lines wait
            if not lines:
                return
            data = "".join(lines).encode()
            start = 0
            while len(data) - start > PIPE_BUF:  # cut after the last whole line that fits (a longer line alone)
                cut = data.rfind(b"\n", start, start + PIPE_BUF) + 1 or data.find(b"\n", start) + 1 or len(data)
                self._write(data[start:cut])
                start = cut
            self._write(data[start:])

    def _write(self, data: bytes) -> None:
        """Whole lines, at most PIPE_BUF bytes a call where a line allows: on a pipe (Cloud Run's stdout)
        such a write is never interleaved with another writer's (the framework's own log lines)."""
        while data:
            data = data[os.write(self.descriptor, data):]

    def _run(self) -> None:
        while True:
            self._wake.wait(self.INTERVAL_S)
            self._wake.clear()
            try:
                self.flush()
            except OSError:  # stdout closed under us: the process is ending
                return


def _text(value: str) -> str:
    return encode_basestring_ascii(value)


def _names(names: Sequence[Any], classes: bool = True) -> str:
    """Class names (the common case, encoded in C), a classifier's other classes by their text (`class_key`: the
    store tells a class, a string, from a regressor's number), a regressor's numbers, or a multi-output model's
    lists."""
    try:
        return "[" + ",".join(map(encode_basestring_ascii, names)) + "]"
    except TypeError:
        if classes:
            return "[" + ",".join(json.dumps(name) if isinstance(name, list) else encode_basestring_ascii(
                class_key(name)) for name in names) + "]"
        return json.dumps(list(names)).replace("NaN", "null")


def _rows(rows: Any) -> str:
    """The rows as JSON: floats as json.dumps writes them (their repr), without its per-call overhead; a missing
    value (NaN, whose repr is the only one to hold "nan") as null."""
    rows = rows.tolist() if hasattr(rows, "tolist") else rows
    try:
        if len(rows) == 1:  # GET /: one row
            text = "[[" + ",".join(map(float.__repr__, rows[0])) + "]]"
        else:
            text = "[" + ",".join("[" + ",".join(map(float.__repr__, row)) + "]" for row in rows) + "]"
        return text.replace("nan", "null") if "nan" in text else text
    except TypeError:  # not all floats (a V2 tensor of integers or booleans, strings): the general encoder
        return json.dumps([[None if isinstance(v, float) and v != v else v for v in row] for row in rows])
