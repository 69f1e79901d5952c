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


def _counting_rows(calls: list[int]):
    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return rows[:, 0] * 2
    return predict


def test_with_nothing_on_its_way_a_lone_request_never_waits() -> None:
    """BATCH_WAIT_MS is no cost at one connection: a leader with no request announced does not wait at all (its
    condition is never waited on), even with a long wait allowed."""
    batcher = Batcher(_counting_rows([]), 32, wait_s=30.0)
    waited: list[float] = []
    real_wait = batcher._arrived.wait
    batcher._arrived.wait = lambda timeout=None: waited.append(timeout) or real_wait(timeout)  # type: ignore
    batcher.announce()  # its own announcement: it arrives with its rows
    assert batcher.predict(np.array([[1.0]])).tolist() == [2.0]
    assert waited == [] and batcher._on_the_way == 0


def test_a_leader_waits_for_an_announced_request_and_they_share_one_call() -> None:
    """A request begun (announced) while a batch forms is waited for, up to the wait, and predicted in the same call.
    Broken on purpose (no wait): two calls of one row each."""
    calls: list[int] = []
    batcher = Batcher(_counting_rows(calls), 32, wait_s=30.0)
    second_begun, answers = threading.Event(), {}

    def first() -> None:
        batcher.announce()
        assert second_begun.wait(10)
        answers["first"] = batcher.predict(np.array([[1.0]])).tolist()

    def second() -> None:
        batcher.announce()
        second_begun.set()
        time.sleep(0.05)  # parsing its request while the first leads
        answers["second"] = batcher.predict(np.array([[2.0]])).tolist()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {"first": [2.0], "second": [4.0]} and calls == [2]
    assert batcher.last_batch_rows == 0  # this thread asked nothing; the others' calls were 2 rows


def test_a_request_that_ends_without_rows_releases_the_wait_and_a_silent_one_is_waited_for_no_longer_than_allowed(
        ) -> None:
    calls: list[int] = []
    batcher = Batcher(_counting_rows(calls), 32, wait_s=30.0)
    other_begun = threading.Event()

    def other() -> None:
        batcher.announce()
        other_begun.set()
        time.sleep(0.05)
        batcher.withdraw()  # a 400 before it had rows

    def announced_and_asked(batcher: Batcher, value: float) -> list[float]:
        batcher.announce()
        return batcher.predict(np.array([[value]])).tolist()

    thread = threading.Thread(target=other)
    thread.start()
    assert other_begun.wait(10)
    with ThreadPoolExecutor(1) as pool:  # waited for the other only until it withdrew (not the 30 s allowed)
        assert pool.submit(announced_and_asked, batcher, 1.0).result(timeout=10) == [2.0]
    thread.join(10)
    bounded = Batcher(_counting_rows(calls), 32, wait_s=0.05)
    threading.Thread(target=bounded.announce).start()  # announced on another thread, and never comes
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(announced_and_asked, bounded, 3.0).result(timeout=10) == [6.0]
