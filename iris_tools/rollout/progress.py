"""`make rollout-status`: where a rollout is, from the record on the service (its lock, the traffic, the revisions
rolled back and promoted) and, for a detached one, its Cloud Run job's executions. The same on both targets: it
reads the Admin API only, so it follows a rollout started from any machine."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from iris_tools.google.api import ApiError, GoogleApi
from iris_tools.rollout.cloud_run import CloudRunService, condition
from iris_tools.rollout.detach import job_name
from iris_tools.rollout.lock import running
from iris_tools.rollout.records import Annotations
from iris_tools.rollout.split import Split

EXECUTIONS_SHOWN = 3
LOG_LINES_SHOWN = 6


def executions(service: CloudRunService) -> list[dict[str, Any]]:
    """The rollout job's executions, newest first ([] when it has none, or no job)."""
    query = urllib.parse.urlencode({"labelSelector": f"run.googleapis.com/job={job_name(service.name)}"})
    path = f"apis/run.googleapis.com/v1/namespaces/{service.gcloud.project}/executions?{query}"
    try:
        found = service.api.call("GET", path).get("items", [])
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise
    return sorted(found, key=lambda e: e["metadata"].get("creationTimestamp", ""), reverse=True)


def last_lines(service: CloudRunService, execution: str, count: int = LOG_LINES_SHOWN) -> list[str]:
    """The newest lines the execution's task printed, oldest first, from Cloud Logging ([] when it cannot say)."""
    api = GoogleApi.of(service.gcloud, "logging", "https://logging.googleapis.com/")
    query = {"resourceNames": [f"projects/{service.gcloud.project}"], "orderBy": "timestamp desc", "pageSize": count,
             "filter": f'resource.type = "cloud_run_job" AND resource.labels.job_name = "{job_name(service.name)}" '
                       f'AND labels."run.googleapis.com/execution_name" = "{execution}"'}
    try:
        entries = api.call("POST", "v2/entries:list", query).get("entries", [])
    except ApiError:
        return []
    return [str(entry.get("textPayload") or entry.get("jsonPayload", {}).get("message", "")) for entry in
            reversed(entries)]


def execution_line(execution: dict[str, Any]) -> str:
    status = execution.get("status", {})
    completed = condition(execution, "Completed")
    state = {"True": "succeeded", "False": "failed"}.get(completed.get("status", ""), "running")
    if state == "failed" and completed.get("reason") == "Cancelled":
        state = "cancelled"
    retried = status.get("retriedCount", 0)
    text = (f"{execution['metadata']['name']}: {state}, started {status.get('startTime', '?')}"
            + (f", ended {status['completionTime']}" if status.get("completionTime") else "")
            + (f", task retried {retried} time{'s' if retried != 1 else ''}" if retried else ""))
    message = completed.get("message")
    return text + (f" ({message})" if message and state != "running" else "")


def status(service: CloudRunService, say: Callable[[str], None], now: Callable[[], float] = time.time) -> int:
    document = service.describe()
    annotations = Annotations.of(document)
    say(f"service {service.name} on {service.gcloud.target}: traffic {Split.of(document)}")
    lock = annotations.lock
    if annotations.lock_error:
        say(f"rollout: its record does not parse ({annotations.lock_error}); `make rollback` undoes it")
    elif lock is None:
        say("rollout: none running")
    else:
        live = running(lock, service)
        state = ("waiting for `make promote` or `make rollback`" if lock.paused else "running") if live else \
            "interrupted (`make rollout` resumes it, `make rollback` undoes it)"
        say(f"rollout: {lock.candidate} from {lock.stable}, {state}, at step {lock.step_text()} of steps "
            f"{lock.plan.text()}, last moved {now() - lock.updated:.0f} s ago, by {lock.who()}")
    if annotations.rolled_back:
        entry = annotations.rolled_back[-1]
        say(f"last rolled back: {entry.revision} at {entry.at}: {entry.reason}")
    if annotations.history:
        say(f"revisions that served 100% before, newest last: {', '.join(annotations.history[-3:])}")
    found = executions(service)
    if found:
        say(f"job {job_name(service.name)} (make rollout DETACH=1), newest first:")
        for execution in found[:EXECUTIONS_SHOWN]:
            say("  " + execution_line(execution))
        newest = found[0]["metadata"]["name"]
        lines = last_lines(service, newest)
        if lines:
            say(f"its last lines ({newest}; all of them: gcloud run jobs logs read {job_name(service.name)}):")
            for line in lines:
                say("  | " + line)
    return 0
