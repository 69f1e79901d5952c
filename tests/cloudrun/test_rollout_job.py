"""`make rollout DETACH=1`: the rollout as a job of the local Cloud Run, run with the real gcloud, left to itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.cloudrun.harness import CloudRunUnderTest, Load, annotation, make, shares, wait_for
from tests.cloudrun.test_rollout import functions_dir, stable  # noqa: F401 - fixtures
from tests.unit.test_notify import Receiver

JOB = "iris-rollout"
EXECUTIONS = "/apis/run.googleapis.com/v1/namespaces/iris-local/executions"


def detach(cloud_run: CloudRunUnderTest, *variables: str, **settings: str) -> str:
    """make rollout DETACH=1 ...: returns once the job runs; the execution's name."""
    started = time.monotonic()
    result = make(cloud_run, "rollout", "DETACH=1", *variables, timeout=120, **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60  # it does not wait for the rollout
    line = next(line for line in result.stdout.splitlines() if " as execution " in line)
    execution = line.split(" as execution ", 1)[1].split()[0]
    assert f"gcloud run jobs executions cancel {execution}" in result.stdout
    return execution


def execution(cloud_run: CloudRunUnderTest, name: str) -> dict:
    response = requests.get(f"{cloud_run.api()}{EXECUTIONS}/{name}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def completed(cloud_run: CloudRunUnderTest, name: str, timeout: float = 180) -> dict:
    """The execution once it ended (its Completed condition True or False)."""
    def ended() -> bool:
        found = execution(cloud_run, name)
        return any(c["type"] == "Completed" and c["status"] != "Unknown" for c in found["status"]["conditions"])
    wait_for(ended, timeout, f"execution {name} ended")
    return execution(cloud_run, name)


def outcome(found: dict) -> str:
    condition = next(c for c in found["status"]["conditions"] if c["type"] == "Completed")
    return {"True": "succeeded", "False": "failed"}[condition["status"]]


def task_logs(cloud_run: CloudRunUnderTest, name: str) -> list[str]:
    """Each attempt's output, in order."""
    paths = sorted((cloud_run.run_dir / "cloudrun" / "logs").glob(f"{name}-0-*.log"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [path.read_text() for path in paths]


def task_processes(name: str) -> list[int]:
    """Processes on this machine started for execution `name` (by the variable Cloud Run gives a task)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"CLOUD_RUN_EXECUTION={name}".encode() in environ:
                found.append(int(entry.name))
    return found


def lock_of(cloud_run: CloudRunUnderTest) -> dict | None:
    return annotation(cloud_run, "rollout")


def test_a_detached_rollout_reaches_100_percent_with_its_operator_gone(stable: CloudRunUnderTest) -> None:
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]) as load:
        name = detach(stable, "MODEL=lin_svc", ROLLBACK_WINDOW="4")  # after it: the old revision kept warm, tagged
        running = lock_of(stable)
        assert running is None or running["execution"] == name  # the lock says which execution holds it
        found = completed(stable, name)
    assert outcome(found) == "succeeded", task_logs(stable, name)
    assert load.failures == []
    (candidate, percent), = shares(stable).items()
    assert percent == 100 and candidate != before
    assert annotation(stable, "history") == [before, candidate] and lock_of(stable) is None
    log, = task_logs(stable, name)
    assert "as the job's service account" in log and f"{candidate} serves 100% of service iris" in log
    assert f"rollback window over: {before} is released" in log  # tagged and untagged through the Admin API
    assert not any(t.get("tag") == "rollback" for t in stable.read()["spec"]["traffic"])
    assert task_processes(name) == []  # nothing of the rollout is left on the machine
    status = make(stable, "rollout-status")
    assert status.returncode == 0, status.stderr
    assert "rollout: none running" in status.stdout and f"{name}: succeeded" in status.stdout
    # It authenticated as the job's service account: google-auth asked the metadata server for a token
    log = (stable.run_dir / "cloudrun" / "controlplane.log").read_text()
    assert "/computeMetadata/v1/instance/service-accounts/default/token" in log


def test_a_detached_faulty_candidate_is_rolled_back_and_every_notice_arrives_in_order(
        stable: CloudRunUnderTest) -> None:
    before = next(iter(shares(stable)))
    hook = Receiver()
    try:
        with Load(stable.read()["status"]["url"]):
            name = detach(stable, "MODEL=flaky", NOTIFY_URL=hook.url)
            found = completed(stable, name)
    finally:
        hook.close()
    assert outcome(found) == "succeeded", task_logs(stable, name)  # a verdict reached: nothing to run again
    assert shares(stable) == {before: 100}
    told = [body["event"] for body in hook.bodies]
    assert told[0] == "started" and told[-1] == "rolled back" and set(told[1:-1]) <= {"held"}, told
    assert hook.bodies[-1]["text"].startswith(f"iris: ROLLED BACK: 100% is on {before} again")
    assert annotation(stable, "rolled-back")[-1]["reason"].startswith("5xx rate")
    status = make(stable, "rollout-status")
    assert "last rolled back:" in status.stdout and "5xx rate" in status.stdout
    assert f"its last lines ({name};" in status.stdout and "  | ROLLED BACK: 100% is on" in status.stdout


def test_a_task_killed_mid_rollout_is_retried_and_the_retry_resumes_and_finishes(stable: CloudRunUnderTest) -> None:
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]) as load:
        name = detach(stable, "MODEL=lin_svc", STEP_SECONDS="6")
        wait_for(lambda: (lock_of(stable) or {}).get("step") == 1, 120, "the rollout at its 50% step")
        killed = lock_of(stable)["pid"]
        os.kill(killed, signal.SIGKILL)
        meanwhile = make(stable, "rollout")  # a person's resume: the execution still runs, its retry owns it
        assert meanwhile.returncode != 0 and "is running" in meanwhile.stderr, meanwhile.stdout + meanwhile.stderr
        found = completed(stable, name)
    assert outcome(found) == "succeeded", task_logs(stable, name)
    assert found["status"]["retriedCount"] == 1
    first, retry = task_logs(stable, name)
    assert "attempt 2" in retry and "resuming the interrupted rollout" in retry and "at step 2 of 3" in retry
    (candidate, percent), = shares(stable).items()
    assert percent == 100 and candidate != before and load.failures == []


def test_a_task_at_its_timeout_puts_every_user_back_on_the_stable_revision_first(stable: CloudRunUnderTest) -> None:
    """Its own deadline (TASK_TIMEOUT_S, a tenth before it) comes first; without it (removed from the job), the local
    Cloud Run's timeout ends the task (SIGTERM, then SIGKILL) and the rollout puts every user back in its grace."""
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]):
        first = detach(stable, "MODEL=lin_svc", STEP_SECONDS="120", TASK_TIMEOUT_S="20")
        found = completed(stable, first)
        assert shares(stable) == {before: 100} and outcome(found) == "succeeded"
        log = task_logs(stable, first)[0]
        assert "the task's timeout is near (TASK_TIMEOUT_S)" in log and f"100% is on {before} again" in log, log
        entry = annotation(stable, "rolled-back")[-1]
        assert "timeout is near" in entry["reason"] and entry["barred"] is False and lock_of(stable) is None

        stable.ok("run", "jobs", "update", JOB, "--remove-env-vars", "TASK_TIMEOUT_S", "--task-timeout", "15s",
                  "--max-retries", "0")
        second = stable.ok("run", "jobs", "execute", JOB, "--async", "--format=value(metadata.name)").stdout.strip()
        wait_for(lambda: (lock_of(stable) or {}).get("step") == 0, 60, "the second rollout at its first step")
        found = completed(stable, second, timeout=90)
    assert shares(stable) == {before: 100}
    condition = next(c for c in found["status"]["conditions"] if c["type"] == "Completed")
    assert outcome(found) == "failed" and "exceeded its task timeout of 15 s" in condition["message"], condition
    log = task_logs(stable, second)[-1]
    assert "SIGTERM" in log and f"100% is on {before} again" in log
    assert lock_of(stable) is None and task_processes(second) == []


@pytest.mark.parametrize("how", ["cancel", "update-traffic", "rollback"])
def test_a_person_stops_a_detached_rollout_as_they_stop_one_in_the_foreground(stable: CloudRunUnderTest,
                                                                             how: str) -> None:
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]):
        name = detach(stable, "MODEL=lin_svc", STEP_SECONDS="120")
        wait_for(lambda: (lock_of(stable) or {}).get("step") == 0, 120, "the rollout at its first step")
        candidate = lock_of(stable)["candidate"]
        if how == "cancel":  # an abort from the job itself: SIGTERM to the task
            stable.ok("run", "jobs", "executions", "cancel", name)
        elif how == "update-traffic":
            stable.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{before}=90,{candidate}=10")
        else:
            assert make(stable, "rollback").returncode == 0
        found = completed(stable, name, timeout=60)
    log = task_logs(stable, name)[-1]
    if how == "cancel":
        completed_condition = next(c for c in found["status"]["conditions"] if c["type"] == "Completed")
        assert completed_condition["reason"] == "Cancelled" and found["status"]["cancelledCount"] == 1
        assert shares(stable) == {before: 100}
        assert "SIGTERM" in log and f"100% is on {before} again" in log
    elif how == "update-traffic":  # the person's split stands
        assert shares(stable) == {before: 90, candidate: 10} and "STOPPED" in log and outcome(found) == "succeeded"
    else:
        assert shares(stable) == {before: 100} and "ABORTED" in log and outcome(found) == "succeeded"
    assert lock_of(stable) is None
    assert task_processes(name) == []


def test_a_job_that_cannot_start_moves_no_traffic_and_says_what_to_do(stable: CloudRunUnderTest) -> None:
    before = shares(stable)
    result = make(stable, "rollout", "DETACH=1", "MODEL=lin_svc", "TOOLS_IMAGE=elsewhere/nothing:1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the rollout job did not start" in result.stderr and "Image 'elsewhere/nothing:1' not found" in \
        result.stderr and "no traffic moved" in result.stderr, result.stderr
    assert shares(stable) == before and lock_of(stable) is None
