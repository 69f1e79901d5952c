"""Fixtures shared by every tier: model folders, Flask test clients, free ports, a never-seen model."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from sklearn.datasets import load_iris
from sklearn.svm import SVC

from shared.artifact import Feature, save_model

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIRS = sorted(path.parent for path in (ROOT / "functions").glob("*/main.py"))
MODEL_NAMES = [path.name for path in MODEL_DIRS]
IRIS_FEATURES = [Feature(name="sepal_length", alias="length"), Feature(name="sepal_width", alias="width")]
# The tutorial's test point and what each version says there.
TEST_POINT = (5.8, 3.4)
TUTORIAL_ANSWERS = {"svc": "versicolor", "lin_svc": "setosa"}


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(params=MODEL_DIRS, ids=MODEL_NAMES)
def model_dir(request: pytest.FixtureRequest) -> Path:
    """Each model folder of functions/ in turn: a test using it runs for every version."""
    return request.param


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FlaskClient]:
    """A Flask test client of the function in `directory`, created as functions-framework does."""

    def make(directory: Path, **environment: str) -> FlaskClient:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return create_app("predict", str(directory / "main.py")).test_client()

    return make


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def iris_xy() -> tuple[np.ndarray, np.ndarray]:
    iris = load_iris()
    return iris.data[:, :2], iris.target


MAIN_TEMPLATE = '''
    from pathlib import Path

    from shared.function import serve_model

    predict = serve_model("{name}", Path(__file__).parent)
'''


def write_model_version(directory: Path, name: str, estimator: object) -> Path:
    """A model version folder as the notebook and `functions/<name>/main.py` make it."""
    X, y = iris_xy()
    save_model(estimator.fit(X, y), directory, name=name, features=IRIS_FEATURES,
               class_names=["setosa", "versicolor", "virginica"], X=X, y=y)
    (directory / "main.py").write_text(textwrap.dedent(MAIN_TEMPLATE.format(name=name)))
    return directory


@pytest.fixture
def unseen_model(tmp_path: Path) -> Path:
    """A third version the handler has never seen: an RBF-kernel SVC."""
    return write_model_version(tmp_path / "rbf_svc", "rbf_svc", SVC(kernel="rbf", gamma=0.7))


@pytest.fixture
def python() -> str:
    return sys.executable
