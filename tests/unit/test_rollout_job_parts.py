"""The parts of jobs and detached rollouts that need no server: the metadata server's tokens, the jobs API's checks,
what the job is handed, and how a job's lock is told live or resumable."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from iris_tools import environment
from iris_tools.cloudrun.errors import InvalidArgument
from iris_tools.cloudrun.jobs import Jobs, check_job_body
from iris_tools.cloudrun.metadata_server import TOKEN_LIFETIME_S, MetadataServer
from iris_tools.cloudrun.store import Store
from iris_tools.cloudrun.endpoints import JOB_SELECTABLE, _terms
from iris_tools.rollout.detach import env_flag, job_environment
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.records import Lock, Plan


def metadata(clock: list[float]) -> MetadataServer:
    return MetadataServer(lambda: "p", lambda: 123, lambda: "us-central1", lambda: "private-token",
                          clock=lambda: clock[0])


def test_tokens_are_accepted_until_they_expire_and_never_made_up_ones() -> None:
    clock = [1000.0]
    server = metadata(clock)
    token = server.issue()
    assert server.accepts(f"Bearer {token}") and server.accepts(None)
    assert not server.accepts("Bearer ya29.made-up") and not server.accepts(f"Basic {token}")
    clock[0] += TOKEN_LIFETIME_S + 1
    assert not server.accepts(f"Bearer {token}")


def test_the_metadata_server_wants_its_header_and_an_audience() -> None:
    server = metadata([0.0])
    assert server.answer("/computeMetadata/v1/project/project-id", None).status == 403
    assert server.answer("/computeMetadata/v1/instance/region", "Google").body == b"projects/123/regions/us-central1"
    assert server.answer("/computeMetadata/v1/instance/service-accounts/default/identity", "Google").status == 400
    assert server.answer("/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
                         "Google").body == b"private-token"
    assert server.answer("/computeMetadata/v1/nothing", "Google").status == 404


def job_body(**spec: object) -> dict:
    return {"metadata": {"name": "r"}, "spec": {"template": {"spec": {"template": {"spec": {
        "containers": [{"image": "iris-tools:1"}], **spec}}}}}}


@pytest.mark.parametrize("body, field", [
    ({}, "job.metadata"), ({"metadata": {"name": "r"}}, "spec.template.spec.template.spec"),
    (job_body(maxRetries=11), "maxRetries"), (job_body(timeoutSeconds="0"), "timeoutSeconds"),
    (job_body(timeoutSeconds="soon"), "timeoutSeconds"),
    ({"metadata": {"name": "r"}, "spec": {"template": {"spec": {"template": {"spec": {"containers": []}}}}}},
     "containers"),
])
def test_a_job_body_that_does_not_fit_is_a_400_naming_its_field(body: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_job_body(body, "p")
    assert field in str(refused.value)


def test_a_job_gets_cloud_run_s_defaults() -> None:
    spec = check_job_body(job_body(), "p")["spec"]["template"]["spec"]
    assert spec["taskCount"] == 1 and spec["template"]["spec"]["maxRetries"] == 3
    assert spec["template"]["spec"]["timeoutSeconds"] == "600"


def test_the_selector_gcloud_sends_for_tasks_is_read() -> None:
    equal, within = _terms("run.googleapis.com/execution = r-abcde,run.googleapis.com/runningState in "
                           "(Running,Failed)", JOB_SELECTABLE, sets=True)
    assert equal == {"run.googleapis.com/execution": "r-abcde"}
    assert within == {"run.googleapis.com/runningState": {"running", "failed"}}
    with pytest.raises(InvalidArgument):
        _terms("app=x", JOB_SELECTABLE, sets=True)


def test_an_execution_of_an_unknown_job_or_a_bad_override_is_refused(tmp_path: Path) -> None:
    jobs = Jobs(Store(tmp_path, "p", "us-central1", "process"), tmp_path, threading.RLock(), lambda: 1, dict)
    with pytest.raises(Exception, match="does not exist"):
        jobs.run_job("nope", {})
    jobs.create_job(job_body(), "p")
    with pytest.raises(InvalidArgument):
        jobs.run_job("r", {"overrides": "everything"})
    assert jobs.executions == {}


def test_variables_are_passed_with_a_delimiter_none_of_them_holds() -> None:
    flag = env_flag({"STEPS": "5 25 50 100", "A": "x,y@z"})
    delimiter = flag[1]
    assert flag.startswith(f"^{delimiter}^") and delimiter not in "x,y@z5 25 50 100"
    assert flag[3:].split(delimiter) == ["STEPS=5 25 50 100", "A=x,y@z"]


class FakeGcloud:
    project, region = "p", "us-central1"

    def property(self, name: str) -> str | None:
        return {"api_endpoint_overrides/run": "http://run.emulator/", "proxy/port": "4242"}.get(name)


def test_the_job_gets_the_rollout_s_settings_and_not_the_operator_s(tmp_path: Path) -> None:
    environ = {"TARGET": "local", "STEPS": "5 50 100", "MODEL": "lin_svc", "DETACH": "1", "NOTIFY_URL": "http://h/",
               "LOAD_RATE": "5", "RUN_DIR": str(tmp_path)}
    env = environment.read(environ, "rollout", "quality")
    found = job_environment(env, FakeGcloud(), "iris-00002-abc", environ)
    assert found["STEPS"] == "5 50 100" and found["NOTIFY_URL"] == "http://h/" and found["REVISION"] == "iris-00002-abc"
    assert "MODEL" not in found and "DETACH" not in found and "LOAD_RATE" not in found
    assert found["RUN_DIR"] == str(tmp_path.resolve()) and found["TASK_TIMEOUT_S"] == "3600"
    assert found["CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN"] == "http://run.emulator/"
    assert found["CLOUDSDK_PROXY_PORT"] == "4242"
    on_cloud_run = {"TARGET": "cloudrun", "LABELS": "labels.csv"}
    with pytest.raises(RolloutError, match="LABELS=feedback"):
        job_environment(environment.read(on_cloud_run, "rollout", "quality"), FakeGcloud(), "r", on_cloud_run)


def test_a_lock_taken_by_this_execution_is_its_retry_s_to_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = Lock(id="a", candidate="c", stable="s", plan=Plan.parse("5 100"), host="elsewhere", pid=1,
                updated=10**12, execution="iris-rollout-abcde")
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "iris-rollout-abcde")
    assert not lock.is_live(60)  # the attempt that wrote it has ended
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "iris-rollout-other")
    assert lock.is_live(60)  # another execution's, recently moved: running
    assert Lock.from_json(lock.to_json()).execution == "iris-rollout-abcde"
    assert "job execution iris-rollout-abcde" in lock.who()


class JobsApi:
    """A target whose jobs API says what `executions` holds (name -> running), or cannot answer (None)."""

    def __init__(self, executions: dict[str, bool] | None) -> None:
        self.executions = executions
        self.settings = type("S", (), {"stale_after_s": 60.0})()

    def execution_running(self, name: str) -> bool | None:
        return None if self.executions is None else self.executions.get(name, False)


def test_a_detached_rollout_runs_while_its_execution_runs_whatever_its_last_process_did(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from iris_tools.rollout.lock import running

    monkeypatch.delenv("CLOUD_RUN_EXECUTION", raising=False)
    dead_here = Lock(id="a", candidate="c", stable="s", plan=Plan.parse("5 100"), host=__import__("socket").gethostname(),
                     pid=2**22 + 7, updated=0, execution="iris-rollout-abcde")
    assert running(dead_here, JobsApi({"iris-rollout-abcde": True}))  # its task died; the retry is coming
    assert not running(dead_here, JobsApi({"iris-rollout-abcde": False}))  # the execution ended: interrupted
    assert not running(dead_here, JobsApi({}))  # no such execution (deleted)
    assert not running(dead_here, JobsApi(None))  # the API cannot say: the process test (dead)
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "iris-rollout-abcde")
    assert not running(dead_here, JobsApi({"iris-rollout-abcde": True}))  # its own retry takes it over


def test_the_task_s_own_deadline_counts_the_time_its_process_already_ran() -> None:
    """Cloud Run counts TASK_TIMEOUT_S from the container's start: a task whose interpreter and imports took seconds
    (a busy machine) must end its rollout that much sooner, or Cloud Run's SIGTERM comes first."""
    import subprocess
    import sys

    from iris_tools.local.processes import age_s

    assert age_s(2**22 + 7) == 0.0  # no such process
    program = ("import os, time, signal, sys; time.sleep(2.5)\n"
               "from iris_tools.local.processes import age_s\n"
               "from iris_tools.rollout.job import Verdicts, install_fail_safe\n"
               "install_fail_safe(Verdicts(), 10.0)\n"
               "print(signal.getitimer(signal.ITIMER_REAL)[0], age_s(os.getpid()))")
    left, age = map(float, subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                                          cwd=Path(__file__).resolve().parents[2]).stdout.split())
    assert age >= 2.5 and abs(left - (10.0 - 1.0 - age)) < 0.5, (left, age)  # 10 s, less its tenth and the age
