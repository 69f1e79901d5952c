"""Concurrent requests' rows predicted in one call of the estimator: what a request costs when the estimator's per-call
cost dwarfs its per-row cost (a HistGradientBoostingClassifier spends about 2 ms of Python over its trees on one row,
and little more on thirty).

No timer, no thread of its own: the first request to arrive while no predict runs predicts its own rows at once (at
one connection nothing waits); requests that arrive while a predict runs queue, and when it ends the next leader
takes every queued request, up to BATCH_SIZE rows, into one call. Each request gets exactly its own rows' answers
back; a call that fails (a row the model refuses) is made again for each request alone, so one bad row never fails
its neighbours. BATCH_SIZE=1 is one predict at a time, each request alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class _Pending:
    __slots__ = ("rows", "done", "lead", "result", "error")

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.done = threading.Event()
        self.lead = False  # woken to lead the next batch, not with an answer
        self.result: Any = None
        self.error: BaseException | None = None


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int) -> None:
        self._predict = predict
        self.max_rows = max(1, max_rows)
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """`rows`' answers, predicted alone or with the rows of requests that came meanwhile."""
        pending = _Pending(rows)
        with self._lock:
            self._queue.append(pending)
            leads = not self._busy
            self._busy = True
        while not leads:
            pending.done.wait()
            if not pending.lead:
                break
            pending.lead, leads = False, True
            pending.done.clear()
        if leads:
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _take(self) -> list[_Pending]:
        """The queued requests of the next call: in order, up to max_rows rows (a larger request alone)."""
        taken, count = [], 0
        while self._queue and (not taken or count + len(self._queue[0].rows) <= self.max_rows):
            count += len(self._queue[0].rows)
            taken.append(self._queue.pop(0))
        return taken

    def _lead(self, own: _Pending) -> None:
        """Predict batches until this request's own is answered; then hand the lead to the next one waiting."""
        while not own.done.is_set():
            with self._lock:
                batch = self._take()
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a request of the batch waiting
                for pending in batch:
                    if not pending.done.is_set():
                        pending.error = exc
                        pending.done.set()
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._busy = False

    def _run(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            answers = self._predict(np.concatenate([pending.rows for pending in batch]))
        except Exception:  # noqa: BLE001 - some request's rows: each is asked alone, and gets its own answer or error
            for pending in batch:
                self._alone(pending)
            return
        start = 0
        for pending in batch:
            pending.result = answers[start:start + len(pending.rows)]
            start += len(pending.rows)
            pending.done.set()

    def _alone(self, pending: _Pending) -> None:
        try:
            pending.result = self._predict(pending.rows)
        except BaseException as exc:  # noqa: BLE001 - handed to the request it belongs to, raised there
            pending.error = exc
        pending.done.set()
