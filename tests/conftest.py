"""Fixtures shared by every tier: model folders, Flask test clients, a never-seen model; and a reaper
that stops every server the run started if the run is interrupted before its tests stop them.

Plain helpers and constants live in `tests/helpers.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from sklearn.svm import SVC

from iris_tools.local import reaper
from tests.helpers import FEEDBACK_KEY, MODEL_DIRS, MODEL_NAMES, ROOT, write_model_version

_watcher: subprocess.Popen | None = None


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Every server this run starts, in any process below it, is recorded for a reaper that outlives the
    run: a SIGKILLed or timed-out run leaves nothing behind. SIGTERM ends the run as Ctrl-C does, so
    the tests' own teardown stops what they started first."""
    global _watcher
    directory = tempfile.mkdtemp(prefix="iris-reaper-")
    os.environ[reaper.ENVIRONMENT] = directory
    _watcher = subprocess.Popen([sys.executable, "-m", "iris_tools.local.reaper", "--owner", str(os.getpid()),
                                 "--dir", directory], cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = os.environ.pop(reaper.ENVIRONMENT, None)
    if directory is None:
        return
    left = reaper.reap(Path(directory))
    if left:
        print(f"\nthe tests left {len(left)} server(s) running; stopped: {', '.join(left)}", file=sys.stderr)
    if _watcher is not None:
        _watcher.kill()
        _watcher.wait()
    reaper.remove(Path(directory))


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
    """A Flask test client of the function in `directory`, created as functions-framework does; its feedback key is
    the tests' own (FEEDBACK_KEY="" turns feedback off)."""

    def make(directory: Path, **environment: str) -> FlaskClient:
        for name, value in {"FEEDBACK_KEY": FEEDBACK_KEY, **environment}.items():
            monkeypatch.setenv(name, value)
        return create_app("predict", str(directory / "main.py")).test_client()

    return make


@pytest.fixture
def unseen_model(tmp_path: Path) -> Path:
    """A third version the handler has never seen: an RBF-kernel SVC."""
    return write_model_version(tmp_path / "rbf_svc", SVC(kernel="rbf", gamma=0.7))
