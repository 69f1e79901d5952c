"""The Open Inference Protocol (V2) routes of every model folder, through Flask's test client."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import joblib
import numpy as np
import pytest
from flask.testing import FlaskClient

from tests.helpers import CLASS_NAMES, iris_xy



@pytest.fixture
def client(model_dir: Path, client_for) -> FlaskClient:
    return client_for(model_dir, MAX_BATCH_ROWS="200")


def version_of(model_dir: Path) -> str:
    return json.loads((model_dir / "model.json").read_text())["sha256"][:12]


def infer(client: FlaskClient, model: str, document: object, *, version: str | None = None, **kwargs):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    return client.post(path, data=data, **kwargs)


def features(rows: list[list[float]], datatype: str = "FP64", name: str = "features") -> dict:
    return {"name": name, "shape": [len(rows), 2], "datatype": datatype, "data": rows}


def test_server_health_and_metadata(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json() == {"name": "iris-versions", "version": "0.1.0",
                                            "extensions": ["binary_tensor_data"]}


def test_model_metadata_and_readiness_by_name_and_by_version(client: FlaskClient, model_dir: Path) -> None:
    name, version = model_dir.name, version_of(model_dir)
    expected = {
        "name": name, "versions": [version], "platform": "scikit-learn",
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 2]}],
        "outputs": [{"name": "predicted_class", "datatype": "INT64", "shape": [-1]},
                    {"name": "class_name", "datatype": "BYTES", "shape": [-1]},
                    {"name": "decision_scores", "datatype": "FP64", "shape": [-1, 3]}],
    }
    assert client.get(f"/v2/models/{name}").get_json() == expected
    assert client.get(f"/v2/models/{name}/versions/{version}").get_json() == expected
    assert client.get(f"/v2/models/{name}/ready").get_json() == {"name": name, "ready": True}
    assert client.get(f"/v2/models/{name}/versions/{version}/ready").status_code == 200


@pytest.mark.parametrize("path_of", [
    lambda name, version: "/v2/models/nope",
    lambda name, version: "/v2/models/nope/ready",
    lambda name, version: f"/v2/models/{name}/versions/000000000000",
    lambda name, version: f"/v2/models/{name}/versions/1/ready",
])
def test_an_unknown_model_or_version_is_404_with_the_protocols_error(client: FlaskClient, model_dir: Path, path_of) -> None:
    response = client.get(path_of(model_dir.name, version_of(model_dir)))
    assert response.status_code == 404
    assert isinstance(response.get_json()["error"], str)


def test_infer_of_an_unknown_model_or_version_is_404(client: FlaskClient, model_dir: Path) -> None:
    assert infer(client, "nope", {"inputs": [features([[5.8, 3.4]])]}).get_json()["code"] == "model_not_found"
    response = infer(client, model_dir.name, {"inputs": [features([[5.8, 3.4]])]}, version="1")
    assert (response.status_code, response.get_json()["code"]) == (404, "version_not_found")


def test_predictions_equal_the_tutorial_apis_on_every_training_point(client: FlaskClient, model_dir: Path) -> None:
    X, _ = iris_xy()
    rows = X.tolist()
    tutorial = [client.get(f"/?length={a!r}&width={b!r}").get_json()["predicted_class"] for a, b in rows]
    predicted, names = [], []
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        body = infer(client, model_dir.name, {"inputs": [features(chunk)],
                                              "outputs": [{"name": "predicted_class"}, {"name": "class_name"}]},
                     version=version_of(model_dir)).get_json()
        assert body["model_name"] == model_dir.name and body["model_version"] == version_of(model_dir)
        by_name = {output["name"]: output for output in body["outputs"]}
        assert by_name["predicted_class"]["shape"] == [len(chunk)]
        predicted += by_name["predicted_class"]["data"]
        names += by_name["class_name"]["data"]
    assert names == tutorial
    assert [CLASS_NAMES[i] for i in predicted] == tutorial


def test_by_default_only_the_predicted_class_is_answered(client: FlaskClient, model_dir: Path) -> None:
    body = infer(client, model_dir.name, {"id": "req-1", "inputs": [features([[5.8, 3.4], [7.0, 3.0]])]}).get_json()
    estimator = joblib.load(model_dir / "model.joblib")
    assert body == {"model_name": model_dir.name, "model_version": version_of(model_dir), "id": "req-1",
                    "outputs": [{"name": "predicted_class", "datatype": "INT64", "shape": [2],
                                 "data": estimator.predict([[5.8, 3.4], [7.0, 3.0]]).tolist()}]}


def test_decision_scores_are_the_estimators_per_class_scores(client: FlaskClient, model_dir: Path) -> None:
    X, _ = iris_xy()
    body = infer(client, model_dir.name, {"inputs": [features(X[:20].tolist())],
                                          "outputs": [{"name": "decision_scores"}]}).get_json()
    (scores,) = body["outputs"]
    assert (scores["datatype"], scores["shape"]) == ("FP64", [20, 3])
    expected = joblib.load(model_dir / "model.joblib").decision_function(X[:20])
    assert np.array(scores["data"]).reshape(20, 3).tolist() == expected.tolist()


@pytest.mark.parametrize("tensor", [
    {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [5.8, 3.4, 5.0, 3.5]},
    {"name": "features", "shape": [2, 2], "datatype": "FP16", "data": [[5.8, 3.4], [5.0, 3.5]]},
    {"name": "features", "shape": [2, 2], "datatype": "INT64", "data": [[6, 3], [5, 4]]},
    {"name": "features", "shape": [2, 2], "datatype": "UINT8", "data": [6, 3, 5, 4]},
])
def test_float_and_integer_datatypes_nested_or_flat(client: FlaskClient, model_dir: Path, tensor: dict) -> None:
    body = infer(client, model_dir.name, {"inputs": [tensor]}).get_json()
    dtype = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "UINT8": np.uint8}[tensor["datatype"]]
    rows = np.asarray(tensor["data"], dtype=dtype).reshape(2, 2).astype(np.float64)
    assert body["outputs"][0]["data"] == joblib.load(model_dir / "model.joblib").predict(rows).tolist()


def test_one_input_per_feature_by_name_or_alias(client: FlaskClient, model_dir: Path) -> None:
    document = {"inputs": [{"name": "width", "shape": [2, 1], "datatype": "FP64", "data": [[3.4], [2.8]]},
                           {"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [5.8, 6.1]}],
                "outputs": [{"name": "class_name"}]}
    body = infer(client, model_dir.name, document).get_json()
    expected = joblib.load(model_dir / "model.joblib").predict([[5.8, 3.4], [6.1, 2.8]])
    assert body["outputs"][0]["data"] == [CLASS_NAMES[i] for i in expected]


def test_binary_tensor_data_in_and_out(client: FlaskClient, model_dir: Path) -> None:
    rows = np.array([[5.8, 3.4], [6.1, 2.8], [5.0, 3.5]], dtype=np.float32)
    raw = rows.astype("<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": "features", "shape": [3, 2], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "predicted_class", "parameters": {"binary_data": True}},
                    {"name": "class_name", "parameters": {"binary_data": True}},
                    {"name": "decision_scores"}],
    }).encode()
    response = infer(client, model_dir.name, header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200 and response.content_type == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    document, tail = json.loads(response.data[:length]), response.data[length:]
    predicted, names, scores = document["outputs"]
    assert predicted["parameters"] == {"binary_data_size": 24} and "data" not in predicted
    labels = np.frombuffer(tail[:24], dtype="<i8").tolist()
    estimator = joblib.load(model_dir / "model.joblib")
    assert labels == estimator.predict(rows.astype(np.float64)).tolist()
    decoded, offset = [], 24
    for _ in range(3):
        (size,) = struct.unpack_from("<I", tail, offset)
        decoded.append(tail[offset + 4:offset + 4 + size].decode())
        offset += 4 + size
    assert offset == len(tail) == 24 + names["parameters"]["binary_data_size"]
    assert decoded == [CLASS_NAMES[i] for i in labels]
    assert len(scores["data"]) == 9


def test_binary_data_output_asks_for_every_default_output_in_binary(client: FlaskClient, model_dir: Path) -> None:
    response = infer(client, model_dir.name, {"inputs": [features([[5.8, 3.4]])], "parameters": {"binary_data_output": True}})
    length = int(response.headers["Inference-Header-Content-Length"])
    assert json.loads(response.data[:length])["outputs"][0]["parameters"] == {"binary_data_size": 8}


def test_any_content_type_is_read_as_the_protocols_body(client: FlaskClient, model_dir: Path) -> None:
    for content_type in (None, "application/json", "application/x-www-form-urlencoded"):
        response = infer(client, model_dir.name, {"inputs": [features([[5.8, 3.4]])]}, content_type=content_type)
        assert response.status_code == 200, content_type


# ---------------------------------------------------------------- malformed requests: 4xx, the protocol's error JSON


def tensor(**changes) -> dict:
    base = {"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [5.8, 3.4]}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


@pytest.mark.parametrize("document, code, field", [
    (b"{", "malformed_json", "body"),
    (b"", "empty_body", "body"),
    (b'{"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [NaN, 3.4]}]}', "not_finite", "body"),
    ([1, 2], "invalid_body", "body"),
    ({"inputs": [tensor()], "model": "x"}, "unknown_field", "model"),
    ({"inputs": [tensor()], "id": 7}, "invalid_body", "id"),
    ({}, "missing_field", "inputs"),
    ({"inputs": []}, "missing_field", "inputs"),
    ({"inputs": ["features"]}, "invalid_body", "inputs[0]"),
    ({"inputs": [tensor(name=...)]}, "missing_field", "inputs[0].name"),
    ({"inputs": [tensor(shape=...)]}, "missing_field", "inputs[0].shape"),
    ({"inputs": [tensor(datatype=...)]}, "missing_field", "inputs[0].datatype"),
    ({"inputs": [tensor(data=...)]}, "missing_field", "inputs[0].data"),
    ({"inputs": [tensor(contents=[1])]}, "unknown_field", "inputs[0].contents"),
    ({"inputs": [tensor(name=3)]}, "invalid_body", "inputs[0].name"),
    ({"inputs": [tensor(shape="1,2")]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor(shape=[1, -2])]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor(shape=[2])]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor(shape=[1, 3], data=[5.8, 3.4, 1.0])]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor(shape=[2, 2])]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor(shape=[0, 2], data=[])]}, "empty_batch", "inputs"),
    ({"inputs": [tensor(datatype="BOOL")]}, "unsupported_datatype", "inputs[0].datatype"),
    ({"inputs": [tensor(datatype="BYTES")]}, "unsupported_datatype", "inputs[0].datatype"),
    ({"inputs": [tensor(datatype="FLOAT")]}, "unsupported_datatype", "inputs[0].datatype"),
    ({"inputs": [tensor(datatype=["FP64"])]}, "unsupported_datatype", "inputs[0].datatype"),
    ({"inputs": [tensor(data=[10**400, 3.4])]}, "not_finite", "inputs[0].data"),
    ({"inputs": [tensor(data=[5.8, "3.4"])]}, "not_a_number", "inputs[0].data"),
    ({"inputs": [tensor(data=[5.8, True])]}, "not_a_number", "inputs[0].data"),
    ({"inputs": [tensor(data=[5.8, None])]}, "missing_value", "inputs[0].data"),
    ({"inputs": [tensor(data={"a": 1})]}, "invalid_tensor", "inputs[0].data"),
    ({"inputs": [tensor(datatype="INT32", data=[5.5, 3])]}, "not_a_number", "inputs[0].data"),
    ({"inputs": [tensor(datatype="INT8", data=[500, 3])]}, "out_of_range", "inputs[0].data"),
    ({"inputs": [tensor(datatype="FP32", data=[1e39, 3.4])]}, "out_of_range", "inputs[0].data"),  # names the element
    ({"inputs": [tensor(data=[1e999, 3.4])]}, "not_finite", "body"),
    ({"inputs": [tensor(name="petal")]}, "unknown_input", "inputs[0].name"),
    ({"inputs": [tensor(name="length", shape=[1], data=[5.8]), tensor(name="sepal_length", shape=[1], data=[5.8])]}, "duplicate_input", "inputs[1].name"),
    ({"inputs": [tensor(name="length", shape=[1], data=[5.8])]}, "missing_input", "inputs"),
    ({"inputs": [tensor(name="length", shape=[1], data=[5.8]), tensor(name="width", shape=[2], data=[3.4, 3.0])]}, "wrong_shape", "inputs[1].shape"),
    ({"inputs": [tensor(name="length", shape=[1, 2])]}, "wrong_shape", "inputs[0].shape"),
    ({"inputs": [tensor()], "outputs": [{"name": "probabilities"}]}, "unknown_output", "outputs[0].name"),
    ({"inputs": [tensor()], "outputs": [{"name": "class_name"}, {"name": "class_name"}]}, "duplicate_output", "outputs[1].name"),
    ({"inputs": [tensor()], "outputs": []}, "invalid_body", "outputs"),
    ({"inputs": [tensor()], "outputs": ["class_name"]}, "invalid_body", "outputs[0]"),
    ({"inputs": [tensor()], "outputs": [{"name": "predicted_class", "parameters": {"class_count": 2}}]}, "unsupported_parameter", "outputs[0].parameters.class_count"),
    ({"inputs": [tensor()], "parameters": []}, "invalid_body", "parameters"),
    ({"inputs": [tensor(parameters={"binary_data_size": 16})]}, "invalid_tensor", "inputs[0]"),
])
def test_malformed_inference_requests_get_400_naming_the_field(client: FlaskClient, model_dir: Path, document, code, field) -> None:
    response = infer(client, model_dir.name, document)
    assert response.status_code == 400, response.data
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert (body["code"], body["field"]) == (code, field)


def test_binary_sizes_that_do_not_fit_the_body_are_refused(client: FlaskClient, model_dir: Path) -> None:
    def send(header: dict, tail: bytes, length: str | None = None):
        encoded = json.dumps(header).encode()
        return infer(client, model_dir.name, encoded + tail,
                     headers={"Inference-Header-Content-Length": length or str(len(encoded))})

    binary = {"name": "features", "shape": [1, 2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
    assert send({"inputs": [binary]}, b"\0" * 8).get_json()["field"] == "inputs[0].parameters.binary_data_size"
    assert send({"inputs": [binary]}, b"\0" * 24).get_json()["field"] == "body"  # 8 bytes nobody claims
    odd = {**binary, "parameters": {"binary_data_size": 15}}
    assert send({"inputs": [odd]}, b"\0" * 15).get_json()["code"] == "invalid_tensor"
    nan = np.array([np.nan, 3.4]).tobytes()
    assert send({"inputs": [binary]}, nan).get_json()["code"] == "not_finite"
    response = send({"inputs": [binary]}, b"\0" * 16, length="99999")
    assert (response.status_code, response.get_json()["field"]) == (400, "Inference-Header-Content-Length")


def test_a_batch_over_the_limit_is_413(client: FlaskClient, model_dir: Path) -> None:
    rows = [[5.8, 3.4]] * 201
    response = infer(client, model_dir.name, {"inputs": [features(rows)]})
    assert (response.status_code, response.get_json()["code"]) == (413, "batch_too_large")
    huge = {"name": "features", "shape": [10**12, 2], "datatype": "FP64", "data": [1.0]}
    response = infer(client, model_dir.name, {"inputs": [huge]})
    assert (response.status_code, response.get_json()["field"]) == (413, "inputs[0].shape")


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/v2/models/{name}/infer", "POST"),
    ("POST", "/v2/health/live", "GET"),
    ("DELETE", "/v2/models/{name}", "GET"),
])
def test_a_wrong_method_on_a_v2_route_is_405(client: FlaskClient, model_dir: Path, method: str, path: str, allowed: str) -> None:
    response = client.open(path.format(name=model_dir.name), method=method)
    assert response.status_code == 405 and response.headers["Allow"] == allowed
    assert isinstance(response.get_json()["error"], str)


@pytest.mark.parametrize("datatype, value, code, element", [
    ("FP64", 2**1024 - 1, "not_finite", "inputs[0].data[1]"),  # just below 2**1024: beyond float64 all the same
    ("FP32", 2**1024 - 1, "not_finite", "inputs[0].data[1]"),
    ("FP64", 2**1024, "not_finite", "inputs[0].data[1]"),
    ("FP32", 3.5e38, "out_of_range", "inputs[0].data[1]"),
    ("FP16", 65505.0, "out_of_range", "inputs[0].data[1]"),
    ("FP16", -70000, "out_of_range", "inputs[0].data[1]"),
    ("INT64", 2**63, "out_of_range", "inputs[0].data[1]"),
    ("INT64", -(2**63) - 1, "out_of_range", "inputs[0].data[1]"),
    ("UINT8", -1, "out_of_range", "inputs[0].data[1]"),
    ("UINT64", 2**64, "out_of_range", "inputs[0].data[1]"),
    ("INT16", 10**400, "out_of_range", "inputs[0].data[1]"),
])
def test_a_value_that_does_not_fit_its_datatype_is_a_400_naming_the_element(
        client: FlaskClient, model_dir: Path, datatype: str, value, code: str, element: str) -> None:
    response = infer(client, model_dir.name, {"inputs": [tensor(datatype=datatype, data=[5, value])]})
    assert response.status_code == 400, response.data
    body = response.get_json()
    assert (body["code"], body["field"]) == (code, "inputs[0].data")
    assert body["error"].startswith(element + ":") and datatype in body["error"] or code == "not_finite"


@pytest.mark.parametrize("datatype, value", [("FP16", 65504.0), ("FP32", 3.4e38), ("INT64", 2**63 - 1),
                                             ("INT64", -(2**63)), ("UINT64", 2**64 - 1), ("UINT8", 0)])
def test_the_largest_value_of_each_datatype_is_accepted(client: FlaskClient, model_dir: Path, datatype: str, value) -> None:
    response = infer(client, model_dir.name, {"inputs": [tensor(datatype=datatype, data=[value, 3])]})
    assert response.status_code == 200, response.data


@pytest.mark.parametrize("where, document", [
    ("parameters.binary_data_output", {"inputs": [tensor()], "parameters": {"binary_data_output": "true"}}),
    ("parameters.binary_data_output", {"inputs": [tensor()], "parameters": {"binary_data_output": 1}}),
    ("outputs[0].parameters.binary_data", {"inputs": [tensor()],
                                           "outputs": [{"name": "class_name", "parameters": {"binary_data": "yes"}}]}),
])
def test_boolean_parameters_take_booleans_only(client: FlaskClient, model_dir: Path, where: str, document) -> None:
    response = infer(client, model_dir.name, document)
    assert response.status_code == 400
    assert (response.get_json()["code"], response.get_json()["field"]) == ("not_a_boolean", where)
