"""Every answer has an id of the server's (X-Answer-Id) and the client's request id (X-Request-Id), returned on every
route and logged with its prediction; POST /feedback takes labels for those answers, signed with the feedback key,
and writes one feedback line; an unsigned, stale or wrongly signed label and bad input get a 4xx JSON and log
nothing."""

from __future__ import annotations

import json
import time

import pytest

from shared.feedback_signature import HEADER as SIGNATURE, signature
from tests.helpers import FEEDBACK_KEY, ROOT, post_feedback, signed

SVC = ROOT / "functions" / "svc"
TRACE = "105445aa7843bc8bf206b12000100000"
POINT = "/?length=5.8&width=3.4"


def logged(capsys: pytest.CaptureFixture, kind: str) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if f'"kind":"{kind}"' in line]


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", POINT, None, 200), ("POST", "/", {"instances": [[5.8, 3.4]]}, 200), ("GET", "/metadata", None, 200),
    ("GET", "/health", None, 200), ("GET", "/v2/models/svc", None, 200), ("GET", "/nowhere", None, 404),
    ("DELETE", "/", None, 405), ("GET", "/?length=abc&width=3.4", None, 400),
    ("POST", "/feedback", {"id": "a", "label": "setosa"}, 200), ("POST", "/feedback", {"label": "x"}, 400),
])
def test_every_route_answers_with_an_id_errors_included(client_for, method: str, path: str, body, status: int) -> None:
    """Broken on purpose (the id only on predictions): the 404, 405 and 400 answers had no X-Request-Id."""
    client = client_for(SVC)

    def ask(**headers: str):
        if body is None:
            return client.open(path, method=method, headers=headers)
        data, signing = signed(body)
        return client.open(path, method=method, data=data, headers={**signing, **headers})

    given = ask(**{"X-Request-Id": "client-chosen-1"})
    assert given.status_code == status and given.headers["X-Request-Id"] == "client-chosen-1"
    again = ask(**{"X-Request-Id": "client-chosen-1"})
    assert again.headers["X-Request-Id"] == "client-chosen-1"
    assert given.headers["X-Answer-Id"] != again.headers["X-Answer-Id"]  # one client id, two answers
    traced = ask(**{"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
    assert traced.headers["X-Request-Id"] == TRACE and traced.headers["X-Answer-Id"] != TRACE
    first, second = (ask().headers["X-Answer-Id"] for _ in range(2))
    assert first != second and len(first) == 32


def test_two_requests_with_one_client_id_are_two_answers_each_logged_with_its_own_id(client_for, capsys) -> None:
    """Broken on purpose (the answer id taken from the client's X-Request-Id): both lines had the same id."""
    client = client_for(SVC)
    capsys.readouterr()
    answers = [client.get(POINT, headers={"X-Request-Id": "same"}),
               client.post("/", json={"instances": [[5.8, 3.4]]}, headers={"X-Request-Id": "same"})]
    lines = logged(capsys, "prediction")
    assert [line["answer_id"] for line in lines] == [answer.headers["X-Answer-Id"] for answer in answers]
    assert len({line["answer_id"] for line in lines}) == 2
    assert [line["request_id"] for line in lines] == ["same", "same"]


def test_an_unusable_client_id_is_replaced_not_echoed(client_for) -> None:
    client = client_for(SVC)
    for bad in ("two words", "x" * 129, "<script>"):
        answer = client.get(POINT, headers={"X-Request-Id": bad})
        assert answer.status_code == 200 and answer.headers["X-Request-Id"] != bad


def test_the_prediction_line_carries_the_id_and_the_trace_and_v2_returns_the_id(client_for, capsys) -> None:
    client = client_for(SVC, GOOGLE_CLOUD_PROJECT="iris-local")
    capsys.readouterr()
    answer = client.get(POINT, headers={"X-Cloud-Trace-Context": f"{TRACE}/7;o=1"})
    (line,) = logged(capsys, "prediction")
    assert line["request_id"] == answer.headers["X-Request-Id"] == TRACE
    assert line["answer_id"] == answer.headers["X-Answer-Id"]
    assert line["logging.googleapis.com/trace"] == f"projects/iris-local/traces/{TRACE}"
    assert answer.get_json() == {"predicted_class": "versicolor", "sepal_length": 5.8, "sepal_width": 3.4,
                                 "model": "svc", "revision": None}  # the tutorial's keys, as they were
    tensor = {"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [5.8, 3.4]}
    unnamed = client.post("/v2/models/svc/infer", json={"inputs": [tensor]})
    assert unnamed.get_json()["id"] == unnamed.headers["X-Answer-Id"]
    named = client.post("/v2/models/svc/infer", json={"id": "mine", "inputs": [tensor]})
    assert named.get_json()["id"] == "mine"


def test_feedback_takes_one_label_or_a_list_and_writes_one_line(client_for, capsys) -> None:
    client = client_for(SVC, K_REVISION="iris-00001-abc")
    capsys.readouterr()
    one = post_feedback(client, {"id": "r1", "label": "setosa"})
    many = post_feedback(client, [{"id": "r2", "label": "virginica"}, {"id": "r3", "label": "versicolor"}])
    assert (one.status_code, one.get_json(), many.get_json()) == (200, {"accepted": 1}, {"accepted": 2})
    first, second = logged(capsys, "feedback")
    assert first["labels"] == [{"id": "r1", "label": "setosa"}] and first["revision"] == "iris-00001-abc"
    assert second["labels"] == [{"id": "r2", "label": "virginica"}, {"id": "r3", "label": "versicolor"}]
    assert second["count"] == 2 and second["request_id"] == many.headers["X-Request-Id"]


@pytest.mark.parametrize("body, field, status", [
    ({"id": "r1", "label": "rose"}, "label", 400),
    ({"label": "setosa"}, "id", 400),
    ({"id": "", "label": "setosa"}, "id", 400),
    ({"id": "x" * 129, "label": "setosa"}, "id", 400),
    ([{"id": "r1", "label": "setosa"}, {"id": "r2", "label": "tulip"}], "[1]label", 400),
    ([], "body", 400),
    ({"id": "r1", "label": "setosa", "extra": 1}, "extra", 400),
    ([{"id": "r1", "label": "setosa"}, {"id": "r1", "label": "virginica"}], "[1]id", 400),
    (b"not json", "body", 400),
    (b'{"id": "r1", "label": "setosa", "pad": "' + b"x" * 2048 + b'"}', "body", 413),
])
def test_bad_feedback_is_a_4xx_json_and_logs_nothing(client_for, capsys, body, field: str, status: int) -> None:
    """Broken on purpose (the label not checked against the classes): "rose" was logged as a label."""
    client = client_for(SVC, MAX_REQUEST_BYTES="2048")
    capsys.readouterr()
    answer = post_feedback(client, body)
    assert answer.status_code == status and answer.get_json()["field"] == field, answer.get_json()
    assert logged(capsys, "feedback") == []


def _refused(client, data: bytes, headers: dict[str, str], status: int, says: str, capsys) -> None:
    answer = client.post("/feedback", data=data, headers={"Content-Type": "application/json", **headers})
    body = answer.get_json()
    assert answer.status_code == status and says in body["error"], body
    assert body["code"] == ("bad_signature" if status == 401 else "feedback_disabled")
    assert logged(capsys, "feedback") == []


LABEL = json.dumps({"id": "r1", "label": "setosa"}).encode()


@pytest.mark.parametrize("signing, says", [
    (lambda now: {}, "missing"),
    (lambda now: {SIGNATURE: signature(LABEL, "another-key-0123456789abcdef", now)}, "does not match"),
    (lambda now: {SIGNATURE: signature(LABEL, FEEDBACK_KEY, now - 301)}, "more than the 300 s"),
    (lambda now: {SIGNATURE: signature(LABEL, FEEDBACK_KEY, now + 301)}, "more than the 300 s"),
    (lambda now: {SIGNATURE: "v1=" + "0" * 64}, "expected t=<unix seconds>"),
    (lambda now: {SIGNATURE: "t=abc,v1=" + "0" * 64}, "expected t=<unix seconds>"),
    (lambda now: {SIGNATURE: f"t={now},v1=\u00e9\u00e9"}, "does not match"),
    (lambda now: {SIGNATURE: signature(LABEL.replace(b"setosa", b"virginica"), FEEDBACK_KEY, now)}, "does not match"),
    (lambda now: {"Authorization": "Bearer " + signature(LABEL, FEEDBACK_KEY, now)}, "missing"),
], ids=["missing", "another key", "stale", "future", "no time", "bad time", "not hex", "body changed", "authorization"])
def test_a_label_not_signed_with_the_key_now_is_a_401_and_logs_nothing(client_for, capsys, signing, says) -> None:
    """Broken on purpose (the time not checked): the replayed body 301 s old was accepted and logged."""
    client = client_for(SVC)
    capsys.readouterr()
    _refused(client, LABEL, signing(int(time.time())), 401, says, capsys)
    assert post_feedback(client, {"id": "r1", "label": "setosa"}).status_code == 200  # the same, signed now


def test_a_replayed_signed_body_counts_only_inside_the_window(client_for, capsys) -> None:
    client = client_for(SVC)
    capsys.readouterr()
    assert post_feedback(client, {"id": "r9", "label": "setosa"}, at=int(time.time()) - 290).status_code == 200
    assert post_feedback(client, {"id": "r9", "label": "setosa"}, at=int(time.time()) - 310).status_code == 401
    assert len(logged(capsys, "feedback")) == 1


def test_with_no_key_feedback_is_off_and_says_how_to_turn_it_on(client_for, capsys) -> None:
    client = client_for(SVC, FEEDBACK_KEY="")
    capsys.readouterr()
    data, headers = signed({"id": "r1", "label": "setosa"})
    _refused(client, data, headers, 403, "--set-secrets FEEDBACK_KEY=", capsys)
    assert client.get(POINT).status_code == 200  # predictions are unaffected


def test_during_a_rotation_both_keys_sign(client_for, capsys) -> None:
    """FEEDBACK_KEY_PREVIOUS is accepted beside the new key; a third key is not."""
    old = "the-key-before-0123456789abcdef"
    client = client_for(SVC, FEEDBACK_KEY=FEEDBACK_KEY, FEEDBACK_KEY_PREVIOUS=old)
    assert post_feedback(client, {"id": "a", "label": "setosa"}, key=old).status_code == 200
    assert post_feedback(client, {"id": "b", "label": "setosa"}, key=FEEDBACK_KEY).status_code == 200
    assert post_feedback(client, {"id": "c", "label": "setosa"}, key="x" * 32).status_code == 401
    after = client_for(SVC, FEEDBACK_KEY=FEEDBACK_KEY, FEEDBACK_KEY_PREVIOUS="")
    assert post_feedback(after, {"id": "d", "label": "setosa"}, key=old).status_code == 401


@pytest.mark.parametrize("environment, says", [
    ({"FEEDBACK_KEY": "short"}, "fewer than 16"),
    ({"FEEDBACK_KEY": "", "FEEDBACK_KEY_PREVIOUS": "the-key-before-0123456789abcdef"}, "without FEEDBACK_KEY"),
])
def test_a_key_that_protects_nothing_refuses_to_start(client_for, capsys, environment, says) -> None:
    with pytest.raises(SystemExit):
        client_for(SVC, **environment)
    assert says in capsys.readouterr().err
