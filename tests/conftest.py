"""Fixtures shared by every tier: model folders, Flask test clients, a never-seen model.

Plain helpers and constants live in `tests/helpers.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from sklearn.svm import SVC

from tests.helpers import MODEL_DIRS, MODEL_NAMES, write_model_version


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


@pytest.fixture
def unseen_model(tmp_path: Path) -> Path:
    """A third version the handler has never seen: an RBF-kernel SVC."""
    return write_model_version(tmp_path / "rbf_svc", SVC(kernel="rbf", gamma=0.7))
