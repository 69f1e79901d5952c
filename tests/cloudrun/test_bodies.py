"""Bodies a client gets wrong, through the local Cloud Run's URL (process runtime; tests/system/test_containers.py
sends the same under docker): every oversized one gets its 413 JSON, slow ones are answered, a client that leaves
is dropped, a lying Content-Length is a 400; never a 5xx, never one in the revision's figures, and the other
clients' requests all answered.

Broken on purpose (the handler answering 413 without reading the body, as before): 6 MB bodies got 503
`revision_unavailable` through Envoy, the connection reset by the instance that had answered."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.parse
from collections.abc import Iterator

import pytest
import requests

from iris_tools.cloudrun.__main__ import revision_figures
from tests.cloudrun import bodies
from tests.cloudrun.harness import CloudRunUnderTest, Load, wait_for


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudRunUnderTest, str, str]]:
    cloud_run = CloudRunUnderTest(tmp_path_factory.mktemp("bodies") / "run")
    cloud_run.start()
    try:
        cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
        service = cloud_run.read()
        yield cloud_run, service["status"]["url"], service["status"]["latestReadyRevisionName"]
    finally:
        assert cloud_run.stop().returncode == 0


def test_every_bad_body_gets_its_4xx_and_no_5xx_reaches_anyone_or_the_figures(served) -> None:
    cloud_run, url, revision = served
    started = time.time()
    with Load(url, threads=2, rate=40, methods=("GET", "POST")) as load:
        answers = bodies.abuse(url, times=200)
        # A 50 MB body sent whole, with no Expect (python's clients): refused by the front end (Envoy) itself, as
        # Cloud Run's refuses an HTTP/1 request over 32 MiB, never handed to the instance.
        whole = [requests.post(url + "/", data=bodies.json_bytes(50 * bodies.MB), timeout=60) for _ in range(5)]
    assert bodies.unexpected(answers, url) == {}, answers
    assert all(sum(counted.values()) == 200 for counted in answers.values())
    assert [(answer.status_code, answer.json()["code"]) for answer in whole] == [(413, "payload_too_large")] * 5
    assert all("the most Cloud Run's front end takes" in answer.json()["error"] for answer in whole)
    assert load.failures == [] and load.total > 0
    time.sleep(2.5)  # a sampler reading (1 s) and an Envoy stats flush (1 s)
    requests_seen, errors, *_ = revision_figures(cloud_run.api(), "iris-local", started - 1, time.time())[revision]
    assert errors == 0, f"{errors} 5xx of {requests_seen} in the revision's figures"


def test_an_instance_that_dies_mid_request_is_named_in_the_503_never_called_not_running(served) -> None:
    """Envoy's 503 says what happened: the running instance that reset the connection, with its address (a POST
    is not retried once sent). Broken on purpose (one reply for every upstream failure, as before): the body said
    `revision_unavailable`, "it is not running"."""
    cloud_run, url, revision = served
    instance = cloud_run.state()["revisions"][revision]["instances"][0]
    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(bodies.head(url, "/", 100) + b'{"instances": ')  # the rest never comes
        time.sleep(0.5)  # Envoy has sent what it has to the instance
        os.killpg(instance["pgid"], signal.SIGKILL)
        status, body = bodies.read_answer(connection.makefile("rb"))
    assert status == 503 and isinstance(body, dict), body
    assert (body["code"], body["revision"], body["instance"]) == (
        "instance_reset", revision, f"{instance['host']}:{instance['port']}"), body
    assert "was running and closed the connection before it answered" in body["error"]
    wait_for(lambda: requests.get(url + "/?length=5.8&width=3.4", timeout=10).status_code == 200,
             60, "the killed instance replaced")
