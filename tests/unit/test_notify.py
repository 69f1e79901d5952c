"""NOTIFY_URL: a rollout's notices reach a receiver in order, each with a `text` a chat webhook shows; a receiver that
refuses is tried again with backoff; one that never answers costs the rollout nothing and its notices' fate is in the
record."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iris_tools.google.monitoring import Figures
from iris_tools.rollout.events import Decided, RecordWriter, Started, StepEnded, StepStarted, fan_out
from iris_tools.rollout.gate import Thresholds, Verdict
from iris_tools.rollout.notify import Notifier
from iris_tools.rollout.records import Plan, Record, StepResult


class Receiver:
    """A webhook on loopback: answers each POST with the next status of `statuses` (then 200), keeps the bodies."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def rollout_events(tmp_path: Path) -> list:
    plan = Plan.parse("5 pause 100")
    record = Record(id="r1", service="iris", target="local", candidate="iris-2", stable="iris-1", plan=plan,
                    thresholds=Thresholds(steps=2), path=str(tmp_path / "record.json"), started=1.0)
    breach = Verdict("rollback", ["5xx rate 30% above 1%"], Figures(40, 12, 2.0, 9.0), Figures(400, 0, 1.0, 4.0))
    return [Started(record, resumed=False),
            StepStarted(0, plan, 5, 2.0),
            StepEnded(plan, StepResult(5, 2.0, 3.0, Figures(50), Figures(900), "promote", ["healthy"], index=0),
                      "PROMOTE: healthy"),
            StepStarted(1, plan, 5, 3.0, paused=True),
            StepEnded(plan, StepResult(5, 3.0, 4.0, verdict="promote", index=1), "promoted by me", judged=False),
            Decided("rolled back", "ROLLED BACK: 100% is on iris-1 again.", verdict=breach)]


def test_every_notice_arrives_in_order_with_its_text_and_the_record_says_so(tmp_path: Path, receiver) -> None:
    """Broken on purpose (the end not flushed): the rollback's notice was still queued when the rollout returned."""
    writer = RecordWriter(tmp_path, print)
    emit = fan_out(writer, Notifier(receiver.url, writer.noted, console="http://127.0.0.1:5080/"))
    for event in rollout_events(tmp_path):
        emit(event)
    assert [body["event"] for body in receiver.bodies] == ["started", "step passed", "paused", "promoted by a person",
                                                           "rolled back"]
    last = receiver.bodies[-1]
    assert last["text"].startswith("iris: ROLLED BACK") and last["reasons"] == ["5xx rate 30% above 1%"]
    assert last["figures"]["candidate"]["errors"] == 12 and last["console"] == "http://127.0.0.1:5080/"
    assert (last["service"], last["candidate"], last["stable"], last["steps"]) == ("iris", "iris-2", "iris-1", 3)
    assert receiver.bodies[1]["step"] == 1 and receiver.bodies[1]["percent"] == 5
    record = json.loads((tmp_path / "record.json").read_text())
    assert [(n["event"], n["delivered"], n["attempts"]) for n in record["notices"]][-1] == ("rolled back", True, 1)
    assert len(record["notices"]) == 5


def test_a_refused_notice_is_tried_again_with_backoff(tmp_path: Path) -> None:
    receiver = Receiver(statuses=[500, 503])
    try:
        writer = RecordWriter(tmp_path, print)
        notifier = Notifier(receiver.url, writer.noted, backoff_s=0.05)
        for event in rollout_events(tmp_path)[:1] + rollout_events(tmp_path)[-1:]:
            writer(event)
            notifier(event)
        record = json.loads((tmp_path / "record.json").read_text())
        assert [n["attempts"] for n in record["notices"]] == [3, 1] and all(n["delivered"] for n in record["notices"])
        assert [body["event"] for body in receiver.bodies] == ["started", "rolled back"]
    finally:
        receiver.close()


def test_a_receiver_that_never_answers_costs_the_rollout_nothing_and_the_record_keeps_the_verdict(
        tmp_path: Path) -> None:
    slow = Receiver(delay_s=5.0)
    try:
        writer = RecordWriter(tmp_path, print)
        notifier = Notifier(slow.url, writer.noted, attempts=2, timeout_s=0.2, backoff_s=0.05, flush_s=1.0)
        events = rollout_events(tmp_path)
        spent = 0.0  # in the notifier only (the record's writes, each fsynced, are not its cost)
        for event in events[:-1]:
            writer(event)
            started = time.monotonic()
            notifier(event)
            spent += time.monotonic() - started
        assert spent < 0.2  # queued: no event waited for the receiver
        writer(events[-1])
        started = time.monotonic()
        notifier(events[-1])  # the end: notices get flush_s (1 s here), then the rollout goes on
        assert time.monotonic() - started < 2.0
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["decision"] == "rolled back"
        assert record["notices"] and not record["notices"][0]["delivered"] and "timed out" in record["notices"][0]["error"]
    finally:
        slow.close()


def test_a_step_held_past_its_window_is_told_once(tmp_path: Path, receiver) -> None:
    from iris_tools.rollout.events import FiguresRead

    writer = RecordWriter(tmp_path, print)
    notifier = Notifier(receiver.url, writer.noted)
    events = rollout_events(tmp_path)
    plan = events[0].record.plan
    held = Verdict("hold", ["12 candidate requests, fewer than 50: too few to judge"], Figures(12), Figures(300))
    notifier(FiguresRead(0, plan, 5, 2.0, 11.0, (2.0, 11.0), 10.0, 40.0, Figures(12), Figures(300), held))
    writer(events[0])  # a notice needs the rollout it is about: nothing was sent before its start
    notifier(events[0])
    for at in (9.0, 11.0, 12.0):  # the window ends at 10: the first poll holds within it, the next two past it
        notifier(FiguresRead(0, plan, 5, 2.0, at, (2.0, at), 10.0, 40.0, Figures(12), Figures(300), held))
    notifier(events[-1])
    assert [body["event"] for body in receiver.bodies] == ["started", "held", "rolled back"]
    assert "too few to judge" in receiver.bodies[1]["text"] and receiver.bodies[1]["step"] == 1
