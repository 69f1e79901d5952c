"""The console's HTTP face through Flask's test client: who may change traffic, and how refusals and failures
read. The view and the actions are stand-ins here; tests/cloudrun/test_console.py drives the real ones."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from iris_tools.console import actions
from iris_tools.console.app import create_app
from iris_tools.google.api import ApiError
from iris_tools.rollout.errors import RolloutError

PORT = 5080
TOKEN = "t0ken"
OWN = {"Host": f"127.0.0.1:{PORT}"}
GOOD = {**OWN, "Origin": f"http://127.0.0.1:{PORT}", "Sec-Fetch-Site": "same-origin", "X-Console-Token": TOKEN}


class FakeView:
    monitoring = None

    def __init__(self) -> None:
        self.failure: Exception | None = None

    def for_service(self, name: str | None) -> str:
        return name or "iris"

    def state(self, name: str | None) -> dict[str, Any]:
        if self.failure:
            raise self.failure
        return {"service": name or "iris", "split": []}

    def figures(self, name: str | None, minutes: float) -> dict[str, Any]:
        return {"service": name or "iris", "minutes": minutes}

    def report_png(self) -> Path | None:
        return None


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    made: list[tuple] = []

    def set_traffic(target: str, split: str) -> dict[str, Any]:
        made.append(("split", target, split))
        total = sum(int(item.partition("=")[2]) for item in split.split())
        if total != 100:
            raise RolloutError(f"SPLIT: the shares add up to {total}, not 100")
        return {"done": "ok"}

    monkeypatch.setattr(actions, "set_traffic", set_traffic)
    monkeypatch.setattr(actions, "roll_back", lambda target: made.append(("rollback", target)) or {"done": "back"})
    monkeypatch.setattr(actions, "promote_paused", lambda target: made.append(("promote", target)) or {"done": "on"})
    return made


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
def client(view: FakeView):
    return create_app(view, PORT, TOKEN).test_client()


def test_the_page_carries_its_token_and_a_policy_that_loads_nothing_from_elsewhere(client) -> None:
    page = client.get("/", headers=OWN)
    assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert re.findall(r'(?:src|href)="([^"]*)"', page.text) == ["/static/icon.svg", "/static/console.css",
                                                                "/static/console.js", "#"]  # all its own
    assert client.get("/static/console.js", headers=OWN).status_code == 200


def test_reads_need_no_token_and_actions_with_the_token_go_through(client, calls: list) -> None:
    assert client.get("/api/state?service=iris", headers=OWN).get_json() == {"service": "iris", "split": []}
    assert client.post("/api/split", json={"split": "svc=100"}, headers=GOOD).get_json() == {"done": "ok"}
    assert client.post("/api/rollback", json={"service": "iris"}, headers=GOOD).status_code == 200
    assert client.post("/api/promote", json={}, headers=GOOD).status_code == 200
    assert calls == [("split", "iris", "svc=100"), ("rollback", "iris"), ("promote", "iris")]


@pytest.mark.parametrize("headers, says", [
    ({**GOOD, "X-Console-Token": ""}, "without the page's X-Console-Token"),
    ({**GOOD, "X-Console-Token": "guess"}, "without the page's X-Console-Token"),
    ({**GOOD, "Origin": "http://evil.example"}, "from origin 'http://evil.example'"),
    ({**GOOD, "Origin": "null"}, "from origin 'null'"),
    ({**GOOD, "Sec-Fetch-Site": "cross-site"}, "from a cross-site page"),
    ({**GOOD, "Sec-Fetch-Site": "same-site"}, "from a same-site page"),
    ({**GOOD, "Host": "rebound.example:5080"}, "answers only at http://127.0.0.1:5080/"),
])
def test_a_change_from_anywhere_but_the_page_is_refused_and_changes_nothing(client, calls: list, headers: dict,
                                                                            says: str) -> None:
    """Broken on purpose (check_change skipped): each of these reached the action."""
    for path in ("/api/split", "/api/rollback", "/api/promote"):
        answer = client.post(path, json={"split": "svc=100"}, headers=headers)
        assert answer.status_code == 403 and says in answer.get_json()["error"]["message"], answer.text
    assert calls == []


def test_a_form_post_is_refused_even_with_the_token(client, calls: list) -> None:
    answer = client.post("/api/rollback", data={"service": "iris"}, headers=GOOD)
    assert answer.status_code == 403 and "application/json" in answer.get_json()["error"]["message"]
    assert calls == []


def test_refusals_read_as_the_command_line_tools_word_for_word(client, calls: list) -> None:
    answer = client.post("/api/split", json={"split": "svc=60 lin_svc=30"}, headers=GOOD)
    assert answer.status_code == 409
    assert answer.get_json()["error"] == {"code": 409, "status": "FAILED_PRECONDITION",
                                          "message": "SPLIT: the shares add up to 90, not 100"}


@pytest.mark.parametrize("path, payload, says", [
    ("/api/split", {"split": ""}, "split must be text"),
    ("/api/split", {"split": 90}, "split must be text"),
    ("/api/split", ["svc=100"], "must be a JSON object"),
    ("/api/split", {"split": "svc=100", "service": "../../x"}, "is not a Cloud Run service name"),
    ("/api/rollback", {"service": "Iris!"}, "is not a Cloud Run service name"),
])
def test_bad_input_is_a_400_with_a_json_error(client, calls: list, path: str, payload: Any, says: str) -> None:
    answer = client.post(path, json=payload, headers=GOOD)
    assert answer.status_code == 400 and says in answer.get_json()["error"]["message"], answer.text
    assert calls == []


def test_bad_reads_are_4xx_and_api_failures_are_json_without_a_trace(client, view: FakeView) -> None:
    assert client.get("/api/figures?minutes=abc", headers=OWN).status_code == 400
    assert client.get("/api/figures?minutes=100000", headers=OWN).status_code == 400
    assert client.get("/api/state?service=a/b", headers=OWN).status_code == 400
    missing = client.get("/api/report.png", headers=OWN)
    assert missing.status_code == 404 and "make report" in missing.get_json()["error"]["message"]
    assert client.get("/nowhere", headers=OWN).get_json()["error"]["code"] == 404
    view.failure = ApiError(0, "GET services/iris: ConnectionRefusedError")
    down = client.get("/api/state", headers=OWN)
    assert down.status_code == 502 and "ConnectionRefusedError" in down.get_json()["error"]["message"]
    view.failure = KeyError("bug")
    bug = client.get("/api/state", headers=OWN)
    assert bug.status_code == 500 and "Traceback" not in bug.text and bug.get_json()["error"]["status"] == "INTERNAL"
