"""Taking the rollout lock is a compare-and-swap on the service's resourceVersion: of two rollouts that read
the service at the same instant, one proceeds and the other refuses, naming it."""

from __future__ import annotations

import copy

import pytest

from iris_tools.google.api import ApiError, GoogleApi
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.cloud_run import CloudRunService as Service
from iris_tools.rollout.lock import acquire, new_lock
from iris_tools.rollout.records import Annotations, Plan
from iris_tools.rollout.settings import RolloutSettings as Settings


class FakeAdminApi(GoogleApi):
    """One service; a PUT carrying an old resourceVersion is refused with 409, as the Admin API does (one
    carrying none is applied, as there). Broken on purpose (annotate not sending the version read): the
    second rollout took the lock over the first."""

    def __init__(self, check_version: bool = True) -> None:
        super().__init__("http://run.test/")
        self.check_version = check_version
        self.service = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": "iris", "resourceVersion": "1", "generation": 1, "annotations": {}},
                        "spec": {"template": {}, "traffic": [{"revisionName": "a", "percent": 100}]}}
        self.writes = 0

    def _status(self) -> dict:
        document = copy.deepcopy(self.service)
        document["status"] = {"observedGeneration": document["metadata"]["generation"],
                              "conditions": [{"type": "Ready", "status": "True"}],
                              "traffic": document["spec"]["traffic"]}
        return document

    def call(self, method: str, path: str, body=None):
        if method == "GET":
            return self._status()
        sent = body["metadata"].get("resourceVersion")
        if self.check_version and sent is not None and sent != self.service["metadata"]["resourceVersion"]:
            raise ApiError(409, f"version {sent} was specified but current version is "
                                f"{self.service['metadata']['resourceVersion']}")
        self.writes += 1
        self.service = copy.deepcopy(body)
        self.service["metadata"]["resourceVersion"] = str(int(self.service["metadata"]["resourceVersion"]) + 1)
        self.service["metadata"]["generation"] = 1
        return self._status()


class FakeGcloud:
    target, project, region = "local", "p", "r"

    def property(self, name: str) -> None:
        return None

    def access_token(self) -> None:
        return None


def rollout_lock(candidate: str):
    return new_lock(candidate, "a", Plan.parse("5 100"), None, None, None)


def racing_services(api: FakeAdminApi) -> tuple[Service, Service]:
    """Two rollouts' views of one service; the second's first read is the same as the first's (read at the
    same instant, before either wrote)."""
    first = Service(FakeGcloud(), Settings(), api=api)
    second = Service(FakeGcloud(), Settings(), api=api)
    stale = api._status()
    reads = iter([stale])
    second.describe = lambda: next(reads, None) or api._status()  # type: ignore[method-assign]
    return first, second


def test_of_two_rollouts_that_read_at_the_same_instant_one_takes_the_lock_and_the_other_refuses() -> None:
    api = FakeAdminApi()
    first, second = racing_services(api)
    lock = acquire(first, rollout_lock("b"), None)
    with pytest.raises(RolloutError, match=r"a rollout of b .* took service iris at the same time"):
        acquire(second, rollout_lock("c"), None)
    assert Annotations.of(api.service).lock.id == lock.id and api.writes == 1


def test_without_the_version_check_both_would_take_it() -> None:
    """The control for the test above: with a server that ignores resourceVersion, the race is lost silently,
    the second lock written over the first. The rollout's own writes are what carries the version."""
    api = FakeAdminApi(check_version=False)
    first, second = racing_services(api)
    acquire(first, rollout_lock("b"), None)
    acquire(second, rollout_lock("c"), None)
    assert api.writes == 2 and Annotations.of(api.service).lock.candidate == "c"
