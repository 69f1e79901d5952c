"""The rollback window's bookkeeping with a stand-in service: a tag added for the window is removed however it
ends (its time up, a rollback, Ctrl-C), a tag the revision had is kept, and the revision is asked every
KEEP_WARM_EVERY_S. The warmth itself, with real instances, is tests/cloudrun/test_instances.py's."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iris_tools.rollout import rollback_window
from iris_tools.rollout.rollback_window import KEEP_WARM_EVERY_S, ROLLBACK_TAG, keep_warm


class Answering(BaseHTTPRequestHandler):
    """A revision: GET /metadata says what it takes (read once, for the row it is asked), POST / answers."""

    asked = 0

    def do_GET(self) -> None:  # noqa: N802
        self._send(b'{"model": {"features": [{"name": "sepal_length", "type": "number"}]}}')

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        Answering.asked += 1
        self._send(b'{"predictions": ["versicolor"]}')

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Answering.asked = 0
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Gcloud:
    def identity_token(self) -> str:
        return ""


class Service:
    """Stands in for CloudRunService: `new` at 100%, `old` at 0% with the tags given."""

    name = "iris"

    def __init__(self, url: str, tags: dict[str, str]) -> None:
        self.url, self.tags, self.gcloud, self.old_percent = url, dict(tags), Gcloud(), 0
        self.calls: list[tuple[str, str]] = []

    def describe(self) -> dict:
        traffic = [{"revisionName": "new", "percent": 100 - self.old_percent},
                   {"revisionName": "old", "percent": self.old_percent}]
        traffic += [{"revisionName": revision, "tag": tag, "url": self.url} for tag, revision in self.tags.items()]
        return {"status": {"traffic": traffic}}

    def tag(self, revision: str, tag: str) -> None:
        self.calls.append(("tag", tag))
        self.tags[tag] = revision

    def untag(self, tag: str) -> None:
        self.calls.append(("untag", tag))
        self.tags.pop(tag)


class Clock:
    """time.time and sleep for the window: each sleep moves time on, nothing waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(rollback_window.time, "time", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_window_asks_the_revision_every_interval_then_removes_the_tag_it_added(url, monkeypatch) -> None:
    service, clock, said = Service(url, {}), Clock(monkeypatch), []
    keep_warm(service, "old", 60, said.append, sleep=clock.sleep)
    assert service.calls == [("tag", ROLLBACK_TAG), ("untag", ROLLBACK_TAG)]
    assert Answering.asked == 60 / KEEP_WARM_EVERY_S
    assert "kept warm for 60 s" in said[0] and "released" in said[-1]


def test_a_tag_the_revision_had_is_used_and_kept(url, monkeypatch) -> None:
    service, clock = Service(url, {"stable": "old"}), Clock(monkeypatch)
    keep_warm(service, "old", 30, lambda text: None, sleep=clock.sleep)
    assert service.calls == [] and service.tags == {"stable": "old"} and Answering.asked == 3


def test_a_rollback_ends_the_window_and_ctrl_c_ends_it_too_each_removing_the_tag(url, monkeypatch) -> None:
    service, clock, said = Service(url, {}), Clock(monkeypatch), []

    def rolled_back(seconds: float) -> None:
        clock.sleep(seconds)
        service.old_percent = 100

    keep_warm(service, "old", 600, said.append, sleep=rolled_back)
    assert Answering.asked == 1 and "serves traffic again" in said[-1]
    assert service.calls == [("tag", ROLLBACK_TAG), ("untag", ROLLBACK_TAG)]

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    service = Service(url, {})
    keep_warm(service, "old", 600, said.append, sleep=interrupted)
    assert "ended early" in said[-1] and service.calls == [("tag", ROLLBACK_TAG), ("untag", ROLLBACK_TAG)]


def test_no_window_changes_nothing(url) -> None:
    service = Service(url, {})
    keep_warm(service, "old", 0, lambda text: None)
    assert service.calls == [] and Answering.asked == 0
