"""The V2 routes of real servers, spoken to by a published client (tritonclient) with its defaults."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from tests.helpers import MODEL_DIRS, free_port, iris_xy
from tests.system.servers import function_server
from tests.system.v2_client import CLASS_NAMES, round_trip

pytestmark = pytest.mark.system


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=[p.name for p in MODEL_DIRS])
def test_tritonclient_round_trip_against_a_function_process(model_dir: Path) -> None:
    X, _ = iris_xy()
    port = free_port()
    with function_server(model_dir / "main.py", port):
        result = round_trip(f"127.0.0.1:{port}", model_dir.name, X)
    estimator = joblib.load(model_dir / "model.joblib")
    assert result["metadata"]["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 2]}]
    # FP32 inputs are the FP32 values: compare with the estimator on those.
    assert result["labels"] == estimator.predict(X.astype("float32").astype("float64")).tolist()
    assert result["names"] == [CLASS_NAMES[i] for i in estimator.predict(X)]
    assert result["scores"].tolist() == estimator.decision_function(X).tolist()
    assert result["id"] == "r1"
    status, message = result["error"]
    assert status == "404" and "no_such_model" in message
