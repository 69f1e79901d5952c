"""Every answered prediction writes one Cloud Logging JSON line on stdout; LOG_PREDICTIONS samples them."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from iris_tools.local.servers import free_port
from iris_tools.local.versions import start_as_in_image
from tests.helpers import ROOT

SVC = ROOT / "functions" / "svc"


def lines(capsys: pytest.CaptureFixture) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"kind":"prediction"' in line]


def test_a_get_writes_one_line_in_cloud_loggings_shape(client_for, capsys) -> None:
    client = client_for(SVC, K_REVISION="iris-00001-abc")
    capsys.readouterr()
    response = client.get("/?length=5.8&width=3.4", headers={"User-Agent": "pytest"})
    (entry,) = lines(capsys)
    import datetime

    stamped = datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))  # RFC 3339, UTC
    assert abs(stamped.timestamp() - datetime.datetime.now(datetime.timezone.utc).timestamp()) < 5
    assert entry["severity"] == "INFO" and entry["message"] == "prediction svc GET /: versicolor"
    assert entry["logging.googleapis.com/labels"] == {"model": "svc", "revision": "iris-00001-abc"}
    assert (entry["kind"], entry["model"], entry["revision"], entry["route"]) == \
        ("prediction", "svc", "iris-00001-abc", "GET /")
    assert (entry["rows"], entry["inputs"], entry["predictions"]) == (1, [[5.8, 3.4]], ["versicolor"])
    http = entry["httpRequest"]
    assert (http["requestMethod"], http["requestUrl"], http["status"], http["userAgent"]) == \
        ("GET", "/?length=5.8&width=3.4", 200, "pytest")
    assert http["latency"].endswith("s") and float(http["latency"][:-1]) * 1000 == pytest.approx(entry["latency_ms"],
                                                                                                  abs=0.001)
    timing = response.headers["Server-Timing"]
    assert timing.startswith("predict;dur=") and float(timing.split("=")[1]) > 0


def test_a_batch_and_a_v2_inference_are_logged_and_long_batches_are_cut(client_for, capsys) -> None:
    client = client_for(SVC, LOG_MAX_ROWS="2")
    capsys.readouterr()
    client.post("/", json={"instances": [[5.8, 3.4], [7.0, 3.0], [5.0, 3.5]]})
    client.post("/v2/models/svc/infer", json={"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP64",
                                                          "data": [5.8, 3.4]}]})
    batch, v2 = lines(capsys)
    assert (batch["route"], batch["rows"], batch["inputs"], batch["predictions"], batch["truncated"]) == \
        ("POST /", 3, [[5.8, 3.4], [7.0, 3.0]], ["versicolor", "virginica"], True)
    assert (v2["route"], v2["rows"], v2["inputs"], v2["predictions"]) == \
        ("POST /v2/models/svc/infer", 1, [[5.8, 3.4]], ["versicolor"])


def test_refused_requests_and_other_routes_write_no_prediction_line(client_for, capsys) -> None:
    client = client_for(SVC)
    capsys.readouterr()
    assert client.get("/?length=x&width=3.4").status_code == 400
    client.get("/metadata")
    client.get("/health")
    assert lines(capsys) == []


@pytest.mark.parametrize("fraction, least, most", [("0", 0, 0), ("0.5", 150, 250), ("1", 400, 400)])
def test_log_predictions_samples_that_fraction_of_requests(client_for, capsys, fraction: str, least: int,
                                                          most: int) -> None:
    client = client_for(SVC, LOG_PREDICTIONS=fraction)
    capsys.readouterr()
    for _ in range(400):
        assert client.get("/?length=5.8&width=3.4").status_code == 200
    assert least <= len(lines(capsys)) <= most  # 0.5: within 5 standard deviations of 200


@pytest.mark.parametrize("value", ["half", "1.5", "-0.1"])
def test_a_bad_log_predictions_refuses_to_start_naming_it(client_for, capsys, value: str) -> None:
    with pytest.raises(SystemExit):
        client_for(SVC, LOG_PREDICTIONS=value)
    assert "LOG_PREDICTIONS=" in capsys.readouterr().err


def _logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if '"kind":"prediction"' in line]


def test_a_reader_of_the_log_file_sees_each_line_within_a_fraction_of_a_second(tmp_path: Path) -> None:
    log = tmp_path / "revision.log"
    server = start_as_in_image(SVC / "main.py", free_port(), log=log, env={"K_REVISION": "r1"})
    try:
        server.wait_ready("/health", timeout=60)
        for number in range(3):
            requests.get(f"{server.url}/?length=5.8&width=3.4", timeout=5)
            deadline = time.monotonic() + 1.0
            while len(_logged(log)) < number + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(_logged(log)) == number + 1  # whole lines, each within a second of its answer
    finally:
        server.stop()


def test_sigterm_right_after_a_burst_loses_no_line(tmp_path: Path) -> None:
    """Lines are written in batches by a writer thread; a graceful stop writes what is queued. Broken on
    purpose (the exit-time flush removed and the writer's interval raised to 10 s), it fails: the lines
    of the last batch were gone."""
    log = tmp_path / "revision.log"
    server = start_as_in_image(SVC / "main.py", free_port(), log=log, env={"K_REVISION": "r1"})
    try:
        server.wait_ready("/health", timeout=60)
        with requests.Session() as session:
            for _ in range(200):
                assert session.get(f"{server.url}/?length=5.8&width=3.4", timeout=5).status_code == 200
        os.killpg(server.pgid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive()
        assert len(_logged(log)) == 200
    finally:
        server.stop()
