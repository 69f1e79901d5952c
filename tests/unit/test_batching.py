"""Concurrent requests' rows in one predict: each request gets exactly its own answers, one bad request never fails
its neighbours, no call takes more than BATCH_SIZE rows (a larger request alone), and at one request nothing waits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from shared.batching import Batcher


class Recorder:
    """A predict that answers each row's first value doubled and refuses a row holding -1; its first call holds
    until `release` is set (so the requests sent meanwhile queue), and says when it started."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(len(rows))
            first = len(self.calls) == 1
        if first:
            self.started.set()
            assert self.release.wait(10)
        if (rows == -1).any():
            raise ValueError("a row this model refuses")
        return rows[:, 0] * 2


def ask_many(batcher: Batcher, requests: list[np.ndarray], recorder: Recorder) -> list[object]:
    """The requests sent while a first one is being predicted: each is queued before that call ends."""

    def ask(rows: np.ndarray) -> object:
        try:
            return batcher.predict(rows).tolist()
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(len(requests) + 1) as pool:
        first = pool.submit(ask, np.array([[0.0]]))
        assert recorder.started.wait(10)
        futures = [pool.submit(ask, rows) for rows in requests]
        deadline = time.monotonic() + 10
        while len(batcher._queue) < len(requests) and time.monotonic() < deadline:
            time.sleep(0.001)
        recorder.release.set()
        assert first.result(timeout=10) == [0.0]
        return [future.result(timeout=10) for future in futures]  # a request left unanswered fails, never hangs


def test_concurrent_requests_share_calls_and_each_gets_its_own_answers() -> None:
    recorder = Recorder()
    requests = [np.array([[float(i)], [float(i) + 0.5]]) for i in range(24)]
    answers = ask_many(Batcher(recorder, 32), requests, recorder)
    assert answers == [[2.0 * i, 2.0 * i + 1.0] for i in range(24)]
    assert sum(recorder.calls) == 49 and len(recorder.calls) < 24 and max(recorder.calls) <= 32


def test_one_bad_request_fails_alone() -> None:
    recorder = Recorder()
    requests = [np.array([[float(i)]]) for i in range(10)] + [np.array([[-1.0]])]
    answers = ask_many(Batcher(recorder, 32), requests, recorder)
    assert answers[:10] == [[2.0 * i] for i in range(10)]
    assert isinstance(answers[10], ValueError)
    assert recorder.calls[1] == 11  # they were asked together first, then each alone


def test_no_call_is_over_batch_size_and_a_larger_request_goes_alone() -> None:
    recorder = Recorder()
    requests = [np.ones((3, 1)) for _ in range(12)] + [np.ones((10, 1))]
    ask_many(Batcher(recorder, 4), requests, recorder)
    assert all(size <= 4 for size in recorder.calls if size != 10) and recorder.calls.count(10) == 1
    assert sum(recorder.calls) == 47


def test_batch_size_1_asks_each_request_alone() -> None:
    recorder = Recorder()
    ask_many(Batcher(recorder, 1), [np.ones((1, 1)) for _ in range(8)], recorder)
    assert recorder.calls == [1] * 9


def test_requests_one_after_another_are_each_predicted_at_once_alone() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder, 32)
    for i in range(200):
        assert batcher.predict(np.array([[float(i)]])).tolist() == [2.0 * i]
    assert recorder.calls == [1] * 200
