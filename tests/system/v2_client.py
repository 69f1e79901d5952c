"""A published Open Inference Protocol client (tritonclient's HTTP client), used as its users use it."""

from __future__ import annotations

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers import CLASS_NAMES  # noqa: F401  (re-exported for the V2 tests)


def round_trip(address: str, model: str, rows: np.ndarray) -> dict:
    """Health, metadata and inference with the client's defaults (binary tensors), then an error."""
    client = triton.InferenceServerClient(address)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(model)
        metadata = client.get_model_metadata(model)
        version = metadata["versions"][0]
        assert client.is_model_ready(model, version)

        features = triton.InferInput("features", list(rows.shape), "FP32")
        features.set_data_from_numpy(rows.astype(np.float32))
        default = client.infer(model, [features])
        labels = default.as_numpy("predicted_class")

        json_input = triton.InferInput("features", list(rows.shape), "FP64")
        json_input.set_data_from_numpy(rows.astype(np.float64), binary_data=False)
        requested = [triton.InferRequestedOutput("class_name"),
                     triton.InferRequestedOutput("decision_scores", binary_data=False)]
        detailed = client.infer(model, [json_input], outputs=requested, model_version=version, request_id="r1")
        names = [name.decode() for name in detailed.as_numpy("class_name")]
        scores = detailed.as_numpy("decision_scores")

        try:
            client.infer("no_such_model", [features])
            error = None
        except InferenceServerException as exc:
            error = (exc.status(), exc.message())
        return {"metadata": metadata, "labels": labels.tolist(), "names": names, "scores": scores,
                "id": detailed.get_response()["id"], "error": error}
    finally:
        client.close()
