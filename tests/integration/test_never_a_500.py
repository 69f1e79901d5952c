"""No request a client can send gets a 500: thousands of generated malformed requests, every route."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

from flask.testing import FlaskClient

# Numbers at and around the edges of every datatype's range: float64, FP32, FP16, the integer types.
EDGES = [2**1024 - 1, 2**1024, -(2**1024 - 1), 1.7976931348623157e308, 3.4028234663852886e38, 3.5e38, 65504.0,
         65505.0, -65520.0, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -1, 127, 128, -129, 255, 256,
         2**31, -(2**31) - 1, 5e-324]
ATOMS = [0, 1, -1, 5.8, 3.4, 1e308, -1e308, 1e-320, 10**400, -10**30, 2**63, True, False, None, "", "5.8", "x", "NaN",
         [], {}, *EDGES]
KEYS = ["instances", "inputs", "outputs", "name", "shape", "datatype", "data", "parameters", "id", "length", "width",
        "sepal_length", "features", "binary_data_size", "binary_data", "binary_data_output", "class_count", "FP32",
        "INT8", "BYTES"]


class Garbage:
    """JSON-ish values shaped like the requests the routes expect, wrong in every way."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def value(self, depth: int = 0) -> object:
        roll = self.random.random()
        if depth > 4 or roll < 0.4:
            return self.random.choice(ATOMS + KEYS)
        if roll < 0.7:
            return [self.value(depth + 1) for _ in range(self.random.randint(0, 4))]
        return {self.random.choice(KEYS): self.value(depth + 1) for _ in range(self.random.randint(0, 4))}

    def tensor(self) -> dict:
        pick = self.random.choice
        tensor = {"name": pick(["features", "length", "width", "x", self.value()]),
                  "shape": pick([[1, 2], [2], [1], [0, 2], [2, 1], [-1, 2], [1, 2, 1], self.value()]),
                  "datatype": pick(["FP64", "FP32", "FP16", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32",
                                    "INT64", "UINT64", "BOOL", self.value()]),
                  "data": self.value() if self.random.random() < 0.6 else [pick(EDGES), pick(EDGES + [5.8])]}
        if self.random.random() < 0.2:
            tensor["parameters"] = {"binary_data_size": pick([0, 8, 16, -1, 10**20, "8", None])}
        return tensor

    def request(self, client: FlaskClient, model: str):
        roll = self.random.random()
        if roll < 0.05:
            path = self.random.choice(["/", "/metadata", "/health", "/v2", f"/v2/models/{model}", "/v2/models/x/infer",
                                       f"/v2/models/{model}/versions/1/ready", "/v2/health/live", "/%00", "/a" * 50])
            return client.open(path, method=self.random.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
        if roll < 0.3:
            document = {"instances": self.value()} if self.random.random() < 0.7 else self.value()
            if self.random.random() < 0.3:
                document = {"instances": [[self.random.choice(EDGES), self.random.choice(EDGES + [3.4])]]}
            return client.post("/", data=json.dumps(document), content_type="application/json")
        if roll < 0.8:
            document: dict = {"inputs": [self.tensor() for _ in range(self.random.randint(1, 3))]}
            if self.random.random() < 0.3:
                document["outputs"] = self.value()
            if self.random.random() < 0.2:
                document["parameters"] = self.value()
            body, headers = json.dumps(document).encode(), {}
            if self.random.random() < 0.2:
                headers["Inference-Header-Content-Length"] = str(self.random.choice([len(body), len(body) - 1, 0, 10**6]))
                body += bytes(self.random.randint(0, 40))
            return client.post(f"/v2/models/{model}/infer", data=body, headers=headers)
        values = ["5.8", "3.4", "", "x", "1e400", "-0", "%00", "9" * 30, *(str(edge) for edge in EDGES)]
        query = "&".join(f"{self.random.choice(KEYS)}={self.random.choice(values)}"
                         for _ in range(self.random.randint(0, 3)))
        return client.get("/?" + query)


def test_thousands_of_malformed_requests_get_4xx_json_and_never_a_500(client_for, model_dir: Path) -> None:
    client = client_for(model_dir)
    garbage = Garbage(seed=zlib.crc32(model_dir.name.encode()))
    statuses = set()
    for _ in range(3000):
        response = garbage.request(client, model_dir.name)
        assert response.status_code < 500, response.get_data(as_text=True)
        statuses.add(response.status_code)
        if response.status_code >= 400:
            assert isinstance(response.get_json()["error"], str)
    assert {400, 404, 405} <= statuses  # it reached every kind of refusal
