"""Concurrent requests' rows predicted in one call of the estimator: what a request costs when the estimator's per-call
cost dwarfs its per-row cost (a HistGradientBoostingClassifier spends about 2 ms of Python over its trees on one row,
and little more on thirty).

No thread of its own: the first request to arrive while no predict runs leads; requests that arrive while a predict
runs queue, and when it ends the next leader takes every queued request, up to BATCH_SIZE rows, into one call. A
leader waits, up to BATCH_WAIT_MS, only for requests the server has already begun (announced by the web layer) and
that have not reached the queue yet: at one connection there are none, and nothing waits. Each request gets exactly
its own rows' answers back; a call that fails (a row the model refuses) is made again for each request alone, so one
bad row never fails its neighbours. BATCH_SIZE=1 is one predict at a time, each request alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class _Pending:
    __slots__ = ("rows", "done", "lead", "result", "error", "batch_rows")

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.done = threading.Event()
        self.lead = False  # woken to lead the next batch, not with an answer
        self.result: Any = None
        self.error: BaseException | None = None
        self.batch_rows = 0  # rows of the call that answered it


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int, wait_s: float = 0.0) -> None:
        self._predict = predict
        self.max_rows = max(1, max_rows)
        self.wait_s = wait_s if self.max_rows > 1 else 0.0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a request joined the queue, or one on its way left
        self._queue: list[_Pending] = []
        self._busy = False
        self._on_the_way = 0  # requests the server began that may still bring rows here (announce/withdraw)
        self._local = threading.local()

    def announce(self) -> None:
        """A request that may bring rows has begun (the web layer calls it first thing, in the request's thread): a
        leader may wait for it until its rows arrive or it ends without any (`withdraw`)."""
        with self._lock:
            self._on_the_way += 1
        self._local.announced = True

    def withdraw(self) -> None:
        """An announced request has ended: if its rows never came (an error, a route without them), no leader waits
        for it any longer."""
        if getattr(self._local, "announced", False):
            self._local.announced = False
            with self._lock:
                self._on_the_way -= 1
                self._arrived.notify_all()

    @property
    def last_batch_rows(self) -> int:
        """The rows of the call that answered this thread's last request (0 before any)."""
        return getattr(self._local, "batch_rows", 0)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """`rows`' answers, predicted alone or with the rows of requests that came meanwhile."""
        pending = _Pending(rows)
        arrived = getattr(self._local, "announced", False)
        self._local.announced = False
        with self._lock:
            if arrived:
                self._on_the_way -= 1  # here now, no longer on its way
            self._queue.append(pending)
            leads = not self._busy
            self._busy = True
            self._arrived.notify_all()
        while not leads:
            pending.done.wait()
            if not pending.lead:
                break
            pending.lead, leads = False, True
            pending.done.clear()
        if leads:
            self._lead(pending)
        self._local.batch_rows = pending.batch_rows
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

    def _queued_rows(self) -> int:
        return sum(len(pending.rows) for pending in self._queue)

    def _wait_for_the_ones_on_their_way(self) -> None:
        """Up to wait_s, while the batch has room and announced requests have not all reached the queue (the lock
        is held, and let go while waiting)."""
        if not self.wait_s:
            return
        deadline = time.monotonic() + self.wait_s
        while self._on_the_way > 0 and self._queued_rows() < self.max_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.wait(left)

    def _lead(self, own: _Pending) -> None:
        """Predict batches until this request's own is answered; then hand the lead to the next one waiting."""
        while not own.done.is_set():
            with self._lock:
                self._wait_for_the_ones_on_their_way()
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
        total = sum(len(pending.rows) for pending in batch)
        try:
            answers = self._predict(np.concatenate([pending.rows for pending in batch]))
        except Exception:  # noqa: BLE001 - some request's rows: each is asked alone, and gets its own answer or error
            for pending in batch:
                self._alone(pending)
            return
        start = 0
        for pending in batch:
            pending.result = answers[start:start + len(pending.rows)]
            pending.batch_rows = total
            start += len(pending.rows)
            pending.done.set()

    def _alone(self, pending: _Pending) -> None:
        pending.batch_rows = len(pending.rows)
        try:
            pending.result = self._predict(pending.rows)
        except BaseException as exc:  # noqa: BLE001 - handed to the request it belongs to, raised there
            pending.error = exc
        pending.done.set()
