"""A heavy model's estimator in a process of its own, fed the batches by pipe.

A tree ensemble's predict is Python over its trees with native stretches that let go of the GIL; in the server,
every one of them has to win the GIL back from the request threads, and a 200-tree forest's predict of 17 rows took
35 ms there against 10 ms alone. Here the estimator runs in a child process with no other thread, so it never waits
for the GIL, and the server's threads wait for its answer without holding it (a pipe read lets it go). What
MLServer does with its inference worker, one per instance.

    parent (a server worker)                          child: python -m shared.predictor_process <dir> <name>
      predict("predict" | "predict_proba", rows) ---->  the same verified artifact, loaded as the server loads it
      <---- ("ok", answers) | ("refused", message) | ("failed", message)

Messages are length-prefixed pickles on the child's stdin and stdout, one request at a time (a lock), between two
processes of ours. Each server worker starts its own child (a fork of the server would share the pipe) as it starts
or on its first predict. The child ignores SIGTERM and SIGINT, so a draining server still gets its in-flight answers,
and ends when its stdin closes (its server gone, however it went). A child that dies mid-predict (killed, out of
memory) is started again and the batch asked once more; a second death is the request's error (a 503 naming the
model), never a hung request.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np

from shared.errors import PredictorUnavailable

_HEADER = struct.Struct("<Q")
_PROTOCOL = 5
METHODS = ("predict", "predict_proba")


class PredictorProcess:
    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._pid = 0  # the server process that started the child: a fork of it starts its own
        self.starts = 0  # children started by this process (a restart after a death counts)

    def _started(self) -> subprocess.Popen:
        """The child of this process, started now if there is none or it has died (the lock is held)."""
        child = self._child
        if child is not None and self._pid == os.getpid() and child.poll() is None:
            return child
        if child is not None and self._pid == os.getpid():
            _close(child)
        root = Path(__file__).resolve().parent.parent
        child = subprocess.Popen([sys.executable, "-m", "shared.predictor_process", str(self.directory), self.name],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     filter(None, [str(root), os.environ.get("PYTHONPATH")]))})
        try:
            ready = _read(child.stdout)  # type: ignore[arg-type]
        except EOFError:
            code = child.wait()
            raise PredictorUnavailable(f"model {self.name!r}: its predictor process did not start (exit {code}); "
                                       f"see the server log") from None
        if ready != ("ready", self.name):
            _close(child)
            raise PredictorUnavailable(f"model {self.name!r}: its predictor process said {ready!r} at start")
        self._child, self._pid = child, os.getpid()
        self.starts += 1
        return child

    def start(self) -> None:
        """Start the child now (a server worker as it begins), so that no request waits for its start."""
        with self._lock:
            self._started()

    def predict(self, method: str, rows: np.ndarray) -> np.ndarray:
        """The estimator's `method` of `rows`, in the child; a ValueError of the estimator's own is raised here as
        one (rows it refuses)."""
        message = pickle.dumps((method, rows), protocol=_PROTOCOL)
        with self._lock:
            for attempt in (1, 2):
                child = self._started()
                try:
                    _write(child.stdin, message)  # type: ignore[arg-type]
                    answer = _read(child.stdout)  # type: ignore[arg-type]
                    break
                except (EOFError, BrokenPipeError, OSError):
                    _close(child)
                    self._child = None
                    if attempt == 2:
                        raise PredictorUnavailable(
                            f"model {self.name!r}: its predictor process ended twice while answering these rows "
                            f"(out of memory, or killed); see the server log") from None
        kind, value = answer
        if kind == "ok":
            return value
        if kind == "refused":
            raise ValueError(value)
        raise RuntimeError(f"the predictor process of {self.name!r}: {value}")

    def stop(self) -> None:
        with self._lock:
            if self._child is not None and self._pid == os.getpid():
                _close(self._child)
            self._child = None


def _close(child: subprocess.Popen) -> None:
    for stream in (child.stdin, child.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _write(stream: IO[bytes], message: bytes) -> None:
    stream.write(_HEADER.pack(len(message)))
    stream.write(message)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def serve(directory: Path, name: str, requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: load the model as the server does, say so, then answer each request until stdin closes."""
    from shared.artifact import open_model
    from shared.estimators import as_served

    manifest, _, estimator = open_model(directory, name)  # only a model with no decision rule batches
    estimator = as_served(estimator, manifest)
    _write(answers, pickle.dumps(("ready", name), protocol=_PROTOCOL))
    while True:
        try:
            method, rows = _read(requests)
        except EOFError:
            return
        try:
            if method not in METHODS:
                raise RuntimeError(f"unknown method {method!r}")
            reply: tuple[str, Any] = ("ok", np.asarray(getattr(estimator, method)(rows)))
        except ValueError as exc:
            reply = ("refused", str(exc))
        except Exception as exc:  # noqa: BLE001 - the server turns it into the request's 500, the child lives on
            reply = ("failed", f"{type(exc).__name__}: {exc}")
        _write(answers, pickle.dumps(reply, protocol=_PROTOCOL))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server drains in-flight requests first; stdin's end ends us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a print anywhere in a model's code must never corrupt the answers' pipe
    serve(Path(argv[0]), argv[1], requests, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
