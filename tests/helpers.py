"""What tests share besides fixtures: paths, the tutorial's answers, training a model version into a folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris

from iris_tools.local.servers import free_port  # noqa: F401  (one free_port for every tier)
from shared.artifact import Feature, is_imported, save_model
from shared.feedback_signature import HEADER as SIGNATURE_HEADER
from shared.feedback_signature import signature

ROOT = Path(__file__).resolve().parent.parent


# The iris versions the training notebook makes (imported models, `make examples`' among them, have tests of
# their own: tests/integration/test_imported_models.py).
MODEL_DIRS = sorted(path.parent for path in (ROOT / "functions").glob("*/main.py") if not is_imported(path.parent))
MODEL_NAMES = [path.name for path in MODEL_DIRS]
IRIS_FEATURES = [Feature(name="sepal_length", alias="length"), Feature(name="sepal_width", alias="width")]
CLASS_NAMES = ["setosa", "versicolor", "virginica"]
# The tutorial's test point and what each version says there.
TEST_POINT = (5.8, 3.4)
TUTORIAL_ANSWERS = {"svc": "versicolor", "lin_svc": "setosa"}
# The feedback key every service a test starts is given (the client_for fixture's, servers' environments), and what
# signs a label for them.
FEEDBACK_KEY = "test-feedback-key-0123456789abcdef"


def signed(body: Any, key: str = FEEDBACK_KEY, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A /feedback body (JSON, or bytes as they are) and the headers that sign it with `key`."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return data, {"Content-Type": "application/json", SIGNATURE_HEADER: signature(data, key, at)}


def post_feedback(client: Any, body: Any, key: str = FEEDBACK_KEY, at: int | None = None) -> Any:
    """POST /feedback through a Flask test client, signed."""
    data, headers = signed(body, key, at)
    return client.post("/feedback", data=data, headers=headers)


def iris_xy() -> tuple[np.ndarray, np.ndarray]:
    iris = load_iris()
    return iris.data[:, :2], iris.target


MAIN_TEMPLATE = '''
    from pathlib import Path

    from shared.function import serve_model

    predict = serve_model(Path(__file__).parent)
'''


def write_model_version(directory: Path, estimator: object, shuffled_labels: bool = False) -> Path:
    """A model version folder as the notebook and `functions/<name>/main.py` make it; its name is the folder's.
    `shuffled_labels`: trained on labels shuffled at random, a version that answers fast, never errs, and is wrong."""
    X, y = iris_xy()
    if shuffled_labels:
        y = np.random.default_rng(0).permutation(y)
    save_model(estimator.fit(X, y), directory, name=directory.name, features=IRIS_FEATURES,
               class_names=CLASS_NAMES, X=X, y=y)
    (directory / "main.py").write_text(textwrap.dedent(MAIN_TEMPLATE))
    return directory
