"""Every model folder's function through Flask's test client, created as functions-framework creates it."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
from flask.testing import FlaskClient

from tests.helpers import CLASS_NAMES, TEST_POINT, TUTORIAL_ANSWERS, iris_xy



@pytest.fixture
def client(model_dir: Path, client_for) -> FlaskClient:
    return client_for(model_dir, K_REVISION=f"iris-{model_dir.name}-test", MAX_BATCH_ROWS="100",
                      MAX_REQUEST_BYTES="20000")


def expected_class(model_dir: Path, point: tuple[float, float]) -> str:
    estimator = joblib.load(model_dir / "model.joblib")
    return CLASS_NAMES[int(estimator.predict([point])[0])]


def post(client: FlaskClient, body: object, **kwargs) -> tuple[int, dict]:
    response = client.post("/", data=json.dumps(body), content_type="application/json", **kwargs)
    return response.status_code, response.get_json()


def test_the_tutorial_point_gets_the_tutorial_answer(client_for) -> None:
    for name, answer in TUTORIAL_ANSWERS.items():
        response = client_for(Path(__file__).parents[2] / "functions" / name).get("/?length=5.8&width=3.4")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        assert response.get_json() == {"predicted_class": answer, "sepal_length": 5.8, "sepal_width": 3.4,
                                       "model": name, "revision": None}
        # The tutorial's keys come first, in the tutorial's order.
        assert list(json.loads(response.data))[:3] == ["predicted_class", "sepal_length", "sepal_width"]


def test_get_answers_with_model_and_revision(client: FlaskClient, model_dir: Path) -> None:
    response = client.get("/?length=5.8&width=3.4")
    assert response.get_json() == {
        "predicted_class": expected_class(model_dir, TEST_POINT), "sepal_length": 5.8, "sepal_width": 3.4,
        "model": model_dir.name, "revision": f"iris-{model_dir.name}-test",
    }
    assert response.headers["X-Model"] == model_dir.name
    assert response.headers["X-Revision"] == f"iris-{model_dir.name}-test"


def test_get_takes_full_feature_names_too(client: FlaskClient, model_dir: Path) -> None:
    body = client.get("/?sepal_length=6.1&sepal_width=2.8").get_json()
    assert (body["predicted_class"], body["sepal_length"], body["sepal_width"]) == (
        expected_class(model_dir, (6.1, 2.8)), 6.1, 2.8)


def test_head_is_answered_like_get_without_a_body(client: FlaskClient) -> None:
    response = client.head("/?length=5.8&width=3.4")
    assert response.status_code == 200 and response.data == b""


def test_post_predicts_every_training_point_as_the_estimator_does(client: FlaskClient, model_dir: Path) -> None:
    X, _ = iris_xy()
    estimator = joblib.load(model_dir / "model.joblib")
    expected = [CLASS_NAMES[int(label)] for label in estimator.predict(X)]
    predictions = []
    for start in range(0, len(X), 100):
        status, body = post(client, {"instances": X[start:start + 100].tolist()})
        assert status == 200
        predictions += body["predictions"]
    assert predictions == expected


def test_post_takes_named_feature_objects(client: FlaskClient, model_dir: Path) -> None:
    status, body = post(client, {"instances": [{"length": 5.8, "width": 3.4}, {"sepal_width": 2.8, "sepal_length": 6.1}]})
    assert (status, body) == (200, {
        "predictions": [expected_class(model_dir, (5.8, 3.4)), expected_class(model_dir, (6.1, 2.8))],
        "model": model_dir.name, "revision": f"iris-{model_dir.name}-test",
    })


def test_metadata_holds_the_manifest_and_the_serving_revision(client: FlaskClient, model_dir: Path) -> None:
    body = client.get("/metadata").get_json()
    assert body["model"] == json.loads((model_dir / "model.json").read_text())
    assert body["serving"] == {"service": None, "revision": f"iris-{model_dir.name}-test", "configuration": None}
    assert body["limits"] == {"max_batch_rows": 100, "max_request_bytes": 20000}


def test_health_answers_ok(client: FlaskClient, model_dir: Path) -> None:
    response = client.get("/health")
    assert (response.status_code, response.get_json()) == (
        200, {"status": "ok", "model": model_dir.name, "revision": f"iris-{model_dir.name}-test"})


# ---------------------------------------------------------------- bad input: 4xx, JSON, field named


def assert_error(response, status: int, code: str, field: str | None) -> dict:
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["code"] == code
    assert body.get("field") == field
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@pytest.mark.parametrize("query, code, field", [
    ("", "missing_field", "length"),
    ("length=5.8", "missing_field", "width"),
    ("width=3.4", "missing_field", "length"),
    ("length=5.8&width=3.4&petal=1", "unknown_field", "petal"),
    ("length=5.8&width=3.4&length=5.9", "duplicate_field", "length"),
    ("length=5.8&sepal_length=5.8&width=3.4", "duplicate_field", "sepal_length"),
    ("length=abc&width=3.4", "not_a_number", "length"),
    ("length=5.8&width=", "missing_value", "width"),
    ("length=nan&width=3.4", "not_a_number", "length"),
    ("length=5.8&width=inf", "not_a_number", "width"),
    ("length=5.8&width=-Infinity", "not_a_number", "width"),
    ("length=1e999&width=3.4", "not_finite", "length"),
])
def test_bad_query_parameters_get_400_naming_the_field(client: FlaskClient, query: str, code: str, field: str) -> None:
    body = assert_error(client.get(f"/?{query}"), 400, code, field)
    assert field in body["error"]


def test_a_missing_parameter_error_says_what_is_expected(client: FlaskClient) -> None:
    body = client.get("/?length=5.8").get_json()
    assert body == {"error": "width: missing; expected length (or sepal_length), width (or sepal_width)",
                    "code": "missing_field", "field": "width"}


@pytest.mark.parametrize("body, code, field", [
    (b'{"instances": [[5.8, 3.4]', "malformed_json", "body"),
    (b"not json", "malformed_json", "body"),
    (b'{"instances": [[NaN, 3.4]]}', "not_finite", "body"),
    (b'{"instances": [[5.8, Infinity]]}', "not_finite", "body"),
    (b'{"instances": [[5.8, -Infinity]]}', "not_finite", "body"),
    (b'{"instances": [[1e999, 3.4]]}', "not_finite", "instances[0][0]"),
    (b'{"instances": [[1' + b"0" * 400 + b', 3.4]]}', "not_finite", "instances[0][0]"),
    (b'{"instances": [{"length": 1' + b"0" * 400 + b', "width": 3.4}]}', "not_finite", "instances[0].length"),
    (b'[[5.8, 3.4]]', "invalid_body", "body"),
    (b'{}', "missing_field", "instances"),
    (b'{"instances": [[5.8, 3.4]], "extra": 1}', "unknown_field", "extra"),
    (b'{"instances": []}', "empty_batch", "instances"),
    (b'{"instances": [[5.8]]}', "wrong_length", "instances[0]"),
    (b'{"instances": [[5.8, "3.4"]]}', "not_a_number", "instances[0][1]"),
    (b'{"instances": [[5.8, true]]}', "not_a_number", "instances[0][1]"),
    (b'{"instances": [[5.8, null]]}', "not_a_number", "instances[0][1]"),
    (b'{"instances": [{"length": 5.8}]}', "missing_field", "instances[0].width"),
    (b'{"instances": [{"length": 5.8, "width": 3.4, "color": 1}]}', "unknown_field", "instances[0].color"),
    (b'', "empty_body", "body"),
])
def test_bad_batches_get_400_naming_the_field(client: FlaskClient, body: bytes, code: str, field: str) -> None:
    assert_error(client.post("/", data=body, content_type="application/json"), 400, code, field)


def test_a_batch_over_max_batch_rows_gets_413(client: FlaskClient) -> None:
    status, body = post(client, {"instances": [[5.8, 3.4]] * 101})
    assert (status, body["code"], body["field"]) == (413, "batch_too_large", "instances")
    assert "101 instances, more than the limit of 100 (MAX_BATCH_ROWS)" in body["error"]


def test_a_body_over_max_request_bytes_gets_413(client: FlaskClient) -> None:
    body = assert_error(client.post("/", data=b"[" * 20001, content_type="application/json"), 413,
                        "payload_too_large", "body")
    assert "MAX_REQUEST_BYTES" in body["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_batch_that_is_not_json_gets_415(client: FlaskClient, content_type: str | None) -> None:
    response = client.post("/", data=b'{"instances": [[5.8, 3.4]]}', content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "Content-Type")


def test_json_with_a_charset_is_json(client: FlaskClient) -> None:
    response = client.post("/", data=b'{"instances": [[5.8, 3.4]]}', content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_query_parameters_on_post_are_refused(client: FlaskClient) -> None:
    response = client.post("/?length=5.8", data=b'{"instances": [[5.8, 3.4]]}', content_type="application/json")
    assert_error(response, 400, "unknown_field", "length")


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/", "GET, POST"), ("DELETE", "/", "GET, POST"), ("PATCH", "/", "GET, POST"),
    ("POST", "/metadata", "GET"), ("DELETE", "/health", "GET"),
])
def test_a_wrong_method_gets_405_with_allow(client: FlaskClient, method: str, path: str, allowed: str) -> None:
    response = client.open(path, method=method)
    assert_error(response, 405, "method_not_allowed", None)
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("path", ["/predict", "/healthz", "/v1/models", "/favicon.ico", "/robots.txt"])
def test_an_unknown_path_gets_404_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type == "application/json"
    assert response.get_json()["code"] == "not_found"


def test_an_unexpected_fault_is_a_json_500_without_a_stack_trace(client: FlaskClient, monkeypatch) -> None:
    from shared.model import ServedModel

    def broken(self, row):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ServedModel, "predict_one", broken)
    response = client.get("/?length=5.8&width=3.4")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error; see the server log", "code": "internal_error"}
    assert b"secret internals" not in response.data


# ---------------------------------------------------------------- a model the handler has never seen


def test_the_shared_handler_serves_a_version_it_has_never_seen(client_for, unseen_model: Path) -> None:
    client = client_for(unseen_model)
    estimator = joblib.load(unseen_model / "model.joblib")
    body = client.get("/?length=5.8&width=3.4").get_json()
    assert body["model"] == "rbf_svc"
    assert body["predicted_class"] == CLASS_NAMES[int(estimator.predict([TEST_POINT])[0])]
    assert client.get("/metadata").get_json()["model"]["params"]["kernel"] == "rbf"


def test_a_function_whose_model_fails_a_check_refuses_to_start(client_for, unseen_model: Path, capsys) -> None:
    (unseen_model / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(SystemExit) as exited:
        client_for(unseen_model)
    assert exited.value.code == 2
    assert "refusing to serve model 'rbf_svc': SHA-256 check failed" in capsys.readouterr().err
