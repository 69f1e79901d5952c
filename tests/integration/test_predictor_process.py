"""A batching model's estimator in a process of its own (PREDICTOR_PROCESS=1, shared/predictor_process.py): the same
answers as in the server, a refused row still the client's 422, a child that dies started again without a failed
request, SIGTERM left to the server, and no child outliving its server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier

from shared.errors import RowsRefused
from shared.model import ServedModel
from tests.helpers import ROOT, free_port
from tests.integration.test_models_people_train import imported

X, Y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)


@pytest.fixture(scope="module")
def boosted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return imported(tmp_path_factory.mktemp("boosted"), HistGradientBoostingClassifier(max_iter=30, random_state=0)
                    .fit(X, Y), "boosted")


def query(row: np.ndarray) -> str:
    return "/?" + "&".join(f"x{i}={value!r}" for i, value in enumerate(row.tolist()))


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", "shared.predictor_process"], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_answers_and_probabilities_from_the_child_are_the_servers_own(boosted: Path, client_for) -> None:
    apart = client_for(boosted, PREDICTOR_PROCESS="1")
    here = client_for(boosted, PREDICTOR_PROCESS="0")
    with ThreadPoolExecutor(8) as pool:  # concurrent: batched in the child
        got = list(pool.map(lambda row: apart.get(query(row) + "&output=probabilities").get_json(), X[:40]))
    for row, answer in zip(X[:40], got):
        assert answer == here.get(query(row) + "&output=probabilities").get_json()
    posted = apart.post("/", json={"instances": X[:25].tolist()}).get_json()["predictions"]
    assert posted == here.post("/", json={"instances": X[:25].tolist()}).get_json()["predictions"]


def test_rows_the_estimator_refuses_in_the_child_are_the_clients_422_and_the_child_lives_on(boosted: Path) -> None:
    """The estimator's own ValueError crosses the pipe as one, and the model makes it RowsRefused (a 422)."""
    model = ServedModel.load(boosted, "boosted", batch_size=32, own_process=True)
    try:
        with pytest.raises(RowsRefused, match="5 features"):
            model._estimator_predict(X[:2, :5].astype(float))
        assert np.array_equal(model._estimator_predict(X[:3].astype(float)), model.load_estimator().predict(X[:3]))
        assert model.process.starts == 1  # type: ignore[union-attr]
    finally:
        model.process.stop()  # type: ignore[union-attr]


def test_a_child_killed_between_or_during_requests_is_started_again_and_no_request_fails(boosted: Path) -> None:
    """Broken on purpose (no second attempt): the request whose child was killed under it got a 503."""
    model = ServedModel.load(boosted, "boosted", batch_size=32, own_process=True)
    rows = X[:5].astype(float)
    expected = model._asked("predict", rows)
    first = model.process._child.pid  # type: ignore[union-attr]
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    assert np.array_equal(model._asked("predict", rows), expected) and model.process.starts == 2
    second = model.process._child.pid  # type: ignore[union-attr]
    killer = subprocess.Popen([sys.executable, "-c", f"import os, signal, time; time.sleep(0.3); "
                               f"os.kill({second}, signal.SIGKILL)"])
    big = np.repeat(X.astype(float), 2000, axis=0)  # 600,000 rows: a predict long enough for the kill to land in it
    answers = model._asked("predict", big)
    killer.wait()
    assert np.array_equal(answers, model.load_estimator().predict(big)) and model.process.starts == 3
    os.kill(model.process._child.pid, signal.SIGTERM)  # type: ignore[union-attr]  - left to the server
    time.sleep(0.2)
    assert model.process._child.poll() is None  # type: ignore[union-attr]
    model.process.stop()


def test_under_the_container_server_the_child_starts_with_the_worker_and_ends_with_it(boosted: Path) -> None:
    """`python -m shared.server` (gunicorn, a forked worker): the child is there before the first request, SIGTERM
    drains the server, and no child is left behind."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "FUNCTION_SOURCE": str(boosted / "main.py"),
           "PREDICTOR_PROCESS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "shared.server"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        children: list[int] = []
        while time.monotonic() < deadline and not children:
            workers = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
            children = [child for worker in workers for child in children_of(int(worker))]
            time.sleep(0.2)
        assert children, "no predictor process started with the worker"
        answer = requests.get(f"http://127.0.0.1:{port}{query(X[0])}", timeout=30)
        assert answer.status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children)
