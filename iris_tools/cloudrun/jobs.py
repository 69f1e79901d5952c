"""Cloud Run jobs, as the Admin API's v1 surface keeps them (`apis/run.googleapis.com/v1/namespaces/<p>/...`):
Jobs, their Executions and each Execution's Tasks, run here as processes (or containers under RUNTIME=docker).

gcloud creates a job (`jobs deploy|create|update`), runs it (`jobs execute`, POST `:run`), then reads executions and
tasks by label (`run.googleapis.com/job`, `run.googleapis.com/execution`). What this keeps, in the store:

    "jobs":       {name: {"object": <Job as written>, "generation": n, "executions": count, "created": ts}}
    "executions": {name: {"object": <Execution>, "job": name, "tasks": [<task record>], "cancelled": bool,
                          "started": ts, "completed": ts or null}}

A task record holds its attempts (pid, start, end, exit code, why it ended). A runner thread per execution starts
each task's attempts in turn: a task whose process exits non-zero is tried again, up to `maxRetries` times; one that
runs past `timeoutSeconds` gets SIGTERM, then SIGKILL after TERMINATION_GRACE_S (a failed attempt, retried like any
other); a cancelled execution's tasks get the same. Each attempt sees Cloud Run's task variables (CLOUD_RUN_JOB,
CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_ATTEMPT, CLOUD_RUN_TASK_COUNT) and the metadata server's
(GCE_METADATA_HOST, GCE_METADATA_IP: this local Cloud Run, metadata_server.py), so google-auth finds its credentials
as on Cloud Run. Its stdout and stderr go to `logs/<execution>-<index>-<attempt>.log`, read back by entries:list as
`cloud_run_job` entries.

What a task runs: under the process runtime, the tools image (`.../iris-tools:<tag>`) is this checkout's
`python -m iris_tools.rollout` with the container's args (default `job`); other images cannot run as processes.
Under docker, the image itself (`docker run --network host`, so the task reaches this loopback API; a task given
RUN_DIR, a local rollout's, gets that folder mounted and runs as this user, so it reads the store and writes its
record where the foreground rollout would).
"""

from __future__ import annotations

import copy
import os
import random
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iris_tools.cloudrun.digest import _docker_id
from iris_tools.cloudrun.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, ResourceNotFound
from iris_tools.cloudrun.name_checks import check_service_name
from iris_tools.cloudrun.resources import LOCATION_LABEL, condition, now
from iris_tools.cloudrun.store import Store
from iris_tools.google.timestamps import rfc3339
from iris_tools.local.processes import running, start_time
from iris_tools.local.servers import DOCKER, stop_group

JOBS_API_VERSION = "run.googleapis.com/v1"
JOB_LABEL = "run.googleapis.com/job"
EXECUTION_LABEL = "run.googleapis.com/execution"
STATE_LABEL = "run.googleapis.com/runningState"
TOOLS_IMAGE = "iris-tools"  # the image whose process-runtime twin is this checkout's tools
DEFAULT_TIMEOUT_S = 600  # Cloud Run's default task timeout
DEFAULT_MAX_RETRIES = 3
MAX_TASKS = 100  # what this local Cloud Run runs per execution (Cloud Run allows 10,000)
TERMINATION_GRACE_S = 10.0  # between SIGTERM and SIGKILL, as Cloud Run gives a container
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.2


def _tools_image(image: str) -> bool:
    return image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[0] == TOOLS_IMAGE


def image_problem(image: str, runtime: str) -> str | None:
    """Why `image` cannot run as a task here (Cloud Run refuses a job whose image it cannot pull), or None."""
    if runtime == "docker":
        return None if _docker_id(image) else f"Image '{image}' not found: docker has no such image (make images)"
    if not _tools_image(image):
        return (f"Image '{image}' not found: under the process runtime a job runs the tools image "
                f"({TOOLS_IMAGE}:<tag>, this checkout's tools); other images run under RUNTIME=docker")
    return None


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


def _number(value: Any, field: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument.field(field, f"must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidArgument.field(field, f"must be from {low} to {high}, got {number}")
    return number


def task_spec(job_object: dict[str, Any]) -> dict[str, Any]:
    return job_object["spec"]["template"]["spec"]["template"]["spec"]


def check_job_body(body: Any, namespace: str) -> dict[str, Any]:
    """A Job as gcloud sends it, checked (InvalidArgument naming the field) and its defaults filled in."""
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise InvalidArgument.field("job.metadata", "a Job needs its metadata")
    document = copy.deepcopy(body)
    name = document["metadata"].get("name")
    check_service_name(name)
    if document["metadata"].get("namespace") not in (None, namespace):
        raise InvalidArgument.field("metadata.namespace", f"must be {namespace}")
    try:
        spec = task_spec(document)
    except (KeyError, TypeError):
        raise InvalidArgument.field("spec.template.spec.template.spec", "a Job needs a task template") from None
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) != 1 or not isinstance(containers[0], dict) \
            or not containers[0].get("image"):
        raise InvalidArgument.field("spec.template.spec.template.spec.containers",
                                    "exactly one container, with an image")
    execution = document["spec"]["template"].setdefault("spec", {})
    execution["taskCount"] = _number(execution.get("taskCount"), "taskCount", 1, 1, MAX_TASKS)
    execution["parallelism"] = _number(execution.get("parallelism"), "parallelism", 0, 0, MAX_TASKS)
    spec["timeoutSeconds"] = str(_number(spec.get("timeoutSeconds"), "timeoutSeconds", DEFAULT_TIMEOUT_S, 1,
                                         7 * 24 * 3600))
    spec["maxRetries"] = _number(spec.get("maxRetries"), "maxRetries", DEFAULT_MAX_RETRIES, 0, 10)
    container = containers[0]
    if not isinstance(container["image"], str):
        raise InvalidArgument.field("containers.image", "must be a string")
    _check_variables(container.get("env"), "containers.env")
    for field in ("args", "command"):
        if not isinstance(container.get(field) or [], list) or \
                not all(isinstance(item, str) for item in container.get(field) or []):
            raise InvalidArgument.field(f"containers.{field}", "must be a list of strings")
    document["metadata"]["namespace"] = namespace
    return document


class Jobs:
    """The jobs API over the store (every call under `lock`); `runner` starts an execution's tasks."""

    def __init__(self, store: Store, directory: Path, lock: threading.RLock, project_number: Callable[[], int],
                 task_environment: Callable[[], dict[str, str]]) -> None:
        self.store = store
        self.directory = directory
        self.lock = lock
        self.project_number = project_number
        self.task_environment = task_environment  # the metadata server's variables, for every task
        self.stopping = threading.Event()

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.store.data.setdefault("jobs", {})

    @property
    def executions(self) -> dict[str, dict[str, Any]]:
        return self.store.data.setdefault("executions", {})

    @property
    def region(self) -> str:
        return self.store.data["region"]

    def _problem(self, document: dict[str, Any]) -> str | None:
        return image_problem(task_spec(document)["containers"][0]["image"], self.store.data["runtime"])

    def _execution_record(self, name: str) -> dict[str, Any]:
        """Under the lock: the stored execution, or the API's 404."""
        record = self.executions.get(name)
        if record is None:
            raise self._not_found("EXECUTION", name)
        return record

    def _not_found(self, kind: str, name: str) -> ResourceNotFound:
        return ResourceNotFound(f"Resource '{name}' of kind '{kind}' in region '{self.region}' in project "
                                f"'{self.store.data['project']}' does not exist.")

    # ------------------------------------------------------------ jobs

    def job(self, name: str) -> dict[str, Any]:
        with self.lock:
            entry = self.jobs.get(name)
            if entry is None:
                raise self._not_found("JOB", name)
            document = copy.deepcopy(entry["object"])
            meta = document["metadata"]
            meta.update({"generation": entry["generation"], "resourceVersion": entry["resource_version"],
                         "creationTimestamp": entry["created"], "uid": entry["uid"],
                         "selfLink": f"/apis/run.googleapis.com/v1/namespaces/{self.project_number()}/jobs/{name}"})
            meta.setdefault("labels", {})[LOCATION_LABEL] = self.region
            problem = entry.get("problem")
            ready = {"type": "Ready", "status": "False" if problem else "True", "lastTransitionTime": entry["updated"],
                     **({"message": problem, "reason": "ImagePullError"} if problem else {})}
            status: dict[str, Any] = {"observedGeneration": entry["generation"], "executionCount": entry["executions"],
                                      "conditions": [ready]}
            latest = entry.get("latest")
            if latest and latest in self.executions:
                execution = self.executions[latest]
                status["latestCreatedExecution"] = {
                    "name": latest, "creationTimestamp": execution["object"]["metadata"]["creationTimestamp"],
                    **({"completionTimestamp": rfc3339(execution["completed"])} if execution["completed"] else {}),
                    "completionStatus": self._completion_status(execution)}
            document["status"] = status
            document.setdefault("apiVersion", JOBS_API_VERSION)
            document.setdefault("kind", "Job")
            return document

    def list_jobs(self) -> dict[str, Any]:
        with self.lock:
            return {"apiVersion": JOBS_API_VERSION, "kind": "JobsList", "metadata": {},
                    "items": [self.job(name) for name in sorted(self.jobs)]}

    def create_job(self, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            document = check_job_body(body, namespace)
            name = document["metadata"]["name"]
            if name in self.jobs:
                raise AlreadyExists(f"Resource '{name}' already exists.")
            stamp = now()
            self.jobs[name] = {"object": document, "generation": 1, "executions": 0, "created": stamp,
                               "updated": stamp, "uid": _uid(), "latest": None,
                               "resource_version": self.store.next_resource_version(),
                               "problem": self._problem(document)}
            self.store.save()
            return self.job(name)

    def replace_job(self, name: str, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.jobs:
                raise self._not_found("JOB", name)
            document = check_job_body(body, namespace)
            if document["metadata"]["name"] != name:
                raise InvalidArgument.field("metadata.name", f"must be {name}")
            entry = self.jobs[name]
            sent = document["metadata"].get("resourceVersion")
            if sent and sent != entry["resource_version"]:
                raise Aborted(f"Job '{name}' was changed since it was read (resourceVersion {sent}, now "
                                         f"{entry['resource_version']})")
            for key in ("resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"):
                document["metadata"].pop(key, None)
            document.pop("status", None)
            entry.update({"object": document, "generation": entry["generation"] + 1, "updated": now(),
                          "resource_version": self.store.next_resource_version(), "problem": self._problem(document)})
            self.store.save()
            return self.job(name)

    def delete_job(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.jobs:
                raise self._not_found("JOB", name)
            for execution_name, execution in list(self.executions.items()):
                if execution["job"] == name:
                    self._cancel(execution)
            del self.jobs[name]
            self.store.save()
            return {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name}}

    # ------------------------------------------------------------ executions

    def run_job(self, name: str, body: Any) -> dict[str, Any]:
        """POST :run: a new execution of the job as it is now (with the request's overrides), started at once."""
        with self.lock:
            if name not in self.jobs:
                raise self._not_found("JOB", name)
            entry = self.jobs[name]
            if entry.get("problem"):
                raise FailedPrecondition(f"Job '{name}' is not ready: {entry['problem']}")
            job_object = copy.deepcopy(entry["object"])
            _apply_overrides(job_object, (body or {}).get("overrides") if isinstance(body, dict) else None)
            check_job_body(job_object, job_object["metadata"]["namespace"])
            execution_name = f"{name}-{_suffix()}"
            while execution_name in self.executions:
                execution_name = f"{name}-{_suffix()}"
            template = job_object["spec"]["template"]
            labels = dict(template.get("metadata", {}).get("labels", {}))
            labels.update({JOB_LABEL: name, "run.googleapis.com/jobUid": entry["uid"],
                           LOCATION_LABEL: self.region})
            stamp = time.time()
            document = {"apiVersion": JOBS_API_VERSION, "kind": "Execution", "metadata": {
                "name": execution_name, "namespace": str(self.project_number()), "labels": labels,
                "annotations": dict(template.get("metadata", {}).get("annotations", {})),
                "creationTimestamp": rfc3339(stamp), "generation": 1, "uid": _uid(),
                "ownerReferences": [{"kind": "Job", "name": name, "apiVersion": JOBS_API_VERSION,
                                     "uid": entry["uid"], "controller": True}]},
                "spec": template["spec"]}
            count = template["spec"]["taskCount"]
            self.executions[execution_name] = {"object": document, "job": name, "cancelled": False,
                                               "started": stamp, "completed": None,
                                               "tasks": [{"index": i, "attempts": [], "state": "PENDING"}
                                                         for i in range(count)]}
            entry["executions"] += 1
            entry["latest"] = execution_name
            self.store.save()
        self.start_runner(execution_name)
        return self.execution(execution_name)

    def execution(self, name: str) -> dict[str, Any]:
        with self.lock:
            record = self._execution_record(name)
            document = copy.deepcopy(record["object"])
            document["status"] = self._execution_status(record)
            return document

    def list_executions(self, labels: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            names = [name for name, record in self.executions.items()
                     if all(record["object"]["metadata"]["labels"].get(k) == v for k, v in labels.items())]
            names.sort(key=lambda n: self.executions[n]["started"], reverse=True)
            return {"apiVersion": JOBS_API_VERSION, "kind": "ExecutionsList", "metadata": {},
                    "items": [self.execution(name) for name in names]}

    def cancel_execution(self, name: str) -> dict[str, Any]:
        with self.lock:
            record = self._execution_record(name)
            if record["completed"] is None:
                self._cancel(record)
                self.store.save()
            return self.execution(name)

    def delete_execution(self, name: str) -> dict[str, Any]:
        with self.lock:
            self._cancel(self._execution_record(name))
            del self.executions[name]
            self.store.save()
            return {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name}}

    def _cancel(self, record: dict[str, Any]) -> None:
        """Under the lock: marked cancelled; its runner stops the running attempts (SIGTERM, then SIGKILL)."""
        if record["completed"] is None:
            record["cancelled"] = True

    # ------------------------------------------------------------ tasks

    def task_documents(self, labels: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            items = [self._task_document(name, record, task) for name, record in sorted(self.executions.items())
                     for task in record["tasks"]]
            items = [item for item in items
                     if all(item["metadata"]["labels"].get(k) == v for k, v in labels.items())]
            return {"apiVersion": JOBS_API_VERSION, "kind": "TasksList", "metadata": {}, "items": items}

    def task(self, name: str) -> dict[str, Any]:
        execution, _, index = name.rpartition("-")
        with self.lock:
            record = self.executions.get(execution)
            if record is None or not index.isdigit() or int(index) >= len(record["tasks"]):
                raise self._not_found("TASK", name)
            return self._task_document(execution, record, record["tasks"][int(index)])

    def _task_document(self, execution: str, record: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
        state = task["state"]
        attempts = task["attempts"]
        labels = {JOB_LABEL: record["job"], EXECUTION_LABEL: execution, STATE_LABEL: state.capitalize(),
                  LOCATION_LABEL: self.region,
                  "run.googleapis.com/index": str(task["index"])}
        status: dict[str, Any] = {"index": task["index"], "retried": max(0, len(attempts) - 1),
                                  "observedGeneration": 1,
                                  "conditions": [condition("Completed", _task_ok(state), _task_message(task))]}
        if attempts:
            status["startTime"] = rfc3339(attempts[0]["started"])
            last = attempts[-1]
            if last.get("ended") is not None:
                status["lastAttemptResult"] = {"exitCode": last.get("exit_code"),
                                               "status": {"code": 0 if last.get("exit_code") == 0 else 2,
                                                          "message": last.get("why", "")}}
        if state in ("SUCCEEDED", "FAILED", "CANCELLED") and attempts and attempts[-1].get("ended"):
            status["completionTime"] = rfc3339(attempts[-1]["ended"])
        return {"apiVersion": JOBS_API_VERSION, "kind": "Task", "metadata": {
            "name": f"{execution}-{task['index']}", "namespace": str(self.project_number()), "labels": labels,
            "creationTimestamp": record["object"]["metadata"]["creationTimestamp"]},
            "spec": record["object"]["spec"]["template"]["spec"], "status": status}

    # ------------------------------------------------------------ status

    @staticmethod
    def _completion_status(record: dict[str, Any]) -> str:
        states = [task["state"] for task in record["tasks"]]
        if record["completed"] is None:
            return "EXECUTION_RUNNING" if any(s == "RUNNING" for s in states) else "EXECUTION_PENDING"
        if record["cancelled"]:
            return "EXECUTION_CANCELLED"
        return "EXECUTION_SUCCEEDED" if all(s == "SUCCEEDED" for s in states) else "EXECUTION_FAILED"

    def _execution_status(self, record: dict[str, Any]) -> dict[str, Any]:
        tasks = record["tasks"]
        count = {state: sum(1 for task in tasks if task["state"] == state)
                 for state in ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")}
        done = record["completed"] is not None
        failed = [task for task in tasks if task["state"] == "FAILED"]
        if not done:
            completed = condition("Completed", None, "Execution is running." if count["RUNNING"] else
                                   "Execution is waiting for its tasks to start.")
        elif record["cancelled"]:
            completed = condition("Completed", False, "The execution was cancelled.", "Cancelled")
        elif failed:
            completed = condition("Completed", False, f"Task {record['object']['metadata']['name']}-"
                                   f"{failed[0]['index']} failed with message: {_task_message(failed[0])}",
                                   "NonZeroExitCode")
        else:
            completed = condition("Completed", True, "Execution completed successfully.")
        status: dict[str, Any] = {
            "observedGeneration": 1, "startTime": rfc3339(record["started"]),
            "conditions": [completed, condition("ResourcesAvailable", True), condition("Started", True),
                           condition("ContainerReady", True)],
            "runningCount": count["RUNNING"], "succeededCount": count["SUCCEEDED"],
            "failedCount": count["FAILED"], "cancelledCount": count["CANCELLED"],
            "retriedCount": sum(max(0, len(task["attempts"]) - 1) for task in tasks),
            "logUri": f"file://{self.directory / 'logs'}"}
        if done:
            status["completionTime"] = rfc3339(record["completed"])
        return status

    # ------------------------------------------------------------ running

    def _still_running(self) -> list[dict[str, Any]]:
        """Attempts recorded as running whose process still runs (the same process: its start time checked)."""
        with self.lock:
            return [attempt for record in self.executions.values() for task in record["tasks"]
                    for attempt in task["attempts"] if attempt.get("ended") is None and attempt.get("pid")
                    and running(attempt["pid"], attempt.get("process_started"))]

    def boot(self) -> None:
        """After a restart: an execution left unfinished goes on (a task whose process is gone, or is stopped now,
        counts its attempt as failed, and is retried if it has retries left)."""
        for attempt in self._still_running():  # outside the state lock: each may take its grace
            _stop(attempt)
        with self.lock:
            unfinished = [name for name, record in self.executions.items() if record["completed"] is None]
            for name in unfinished:
                for task in self.executions[name]["tasks"]:
                    for attempt in task["attempts"]:
                        if attempt.get("ended") is None:
                            attempt.update({"ended": time.time(), "exit_code": None,
                                            "why": "the local Cloud Run stopped while the task ran"})
                    if task["state"] == "RUNNING":
                        task["state"] = "PENDING"
            self.store.save()
        for name in unfinished:
            self.start_runner(name)

    def stop_all(self) -> None:
        """The local Cloud Run stops: every running task gets SIGTERM, then SIGKILL (their executions go on at the
        next start), whether this control plane started it or one that is gone did (`make stop` after a crash)."""
        self.stopping.set()
        for attempt in self._still_running():
            _stop(attempt, reap=False)  # a child of ours is reaped by its runner's Popen

    def start_runner(self, name: str) -> None:
        threading.Thread(target=self._run, args=(name,), name=f"execution-{name}", daemon=True).start()

    def _run(self, name: str) -> None:
        with self.lock:
            record = self.executions.get(name)
            if record is None:
                return
            parallelism = record["object"]["spec"].get("parallelism") or len(record["tasks"])
        gate = threading.Semaphore(parallelism)
        threads = []
        for index in range(len(record["tasks"])):
            gate.acquire()
            thread = threading.Thread(target=self._run_task, args=(name, index, gate),
                                      name=f"task-{name}-{index}", daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        with self.lock:
            record = self.executions.get(name)
            if record is not None and not self.stopping.is_set():
                record["completed"] = time.time()
                self.store.save()

    def _run_task(self, name: str, index: int, gate: threading.Semaphore) -> None:
        try:
            while not self.stopping.is_set():
                with self.lock:
                    record = self.executions.get(name)
                    if record is None:
                        return
                    task = record["tasks"][index]
                    spec = record["object"]["spec"]["template"]["spec"]
                    retries = int(spec.get("maxRetries", DEFAULT_MAX_RETRIES))
                    if task["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                        return
                    if record["cancelled"]:
                        task["state"] = "CANCELLED"
                        self.store.save()
                        return
                    if len(task["attempts"]) > retries:
                        task["state"] = "FAILED"
                        self.store.save()
                        return
                    attempt_number = len(task["attempts"])
                    plan = self._plan(name, record, index, attempt_number)
                    attempt: dict[str, Any] = {"started": time.time(), "ended": None, "pid": None,
                                               "log": str(plan["log"]) if isinstance(plan, dict) else None}
                    task["attempts"].append(attempt)
                    task["state"] = "RUNNING"
                    self.store.save()
                if isinstance(plan, str):  # it cannot run here: failed for good, as an image Cloud Run cannot pull
                    self._ended(name, index, attempt, None, plan, final=True)
                    return
                self._attempt(name, index, attempt, plan, float(spec.get("timeoutSeconds", DEFAULT_TIMEOUT_S)))
        finally:
            gate.release()

    def _plan(self, name: str, record: dict[str, Any], index: int, attempt: int) -> dict[str, Any] | str:
        """How to start attempt `attempt` of task `index`, or why it cannot start."""
        spec = record["object"]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        image = container["image"]
        runtime = self.store.data["runtime"]
        environment = {item["name"]: str(item.get("value", "")) for item in container.get("env", []) or []}
        environment.update(self.task_environment())
        environment.update({"CLOUD_RUN_JOB": record["job"], "CLOUD_RUN_EXECUTION": name,
                            "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
                            "CLOUD_RUN_TASK_COUNT": str(len(record["tasks"]))})
        args = [str(a) for a in container.get("args", []) or []]
        command = [str(c) for c in container.get("command", []) or []]
        log = self.directory / "logs" / f"{name}-{index}-{attempt}.log"
        if runtime == "docker":
            flags = [flag for key, value in environment.items() for flag in ("-e", f"{key}={value}")]
            if environment.get("RUN_DIR", "").startswith("/"):  # a local rollout's store and records: this machine's
                flags += ["-v", f"{environment['RUN_DIR']}:{environment['RUN_DIR']}", "--user",
                          f"{os.getuid()}:{os.getgid()}"]
            entry = ["--entrypoint", command[0]] if command else []
            container_name = f"cloudrun_{self.store.instance_id()}_{name}_{index}_{attempt}"
            return {"argv": [DOCKER, "run", "--rm", "--network", "host", "--name", container_name, *flags, *entry,
                             image, *command[1:], *args], "environment": dict(os.environ), "log": log,
                    "container": container_name}
        problem = image_problem(image, runtime)
        if problem:
            return problem
        if command:
            return f"Image '{image}': the tools image's entrypoint is fixed under the process runtime (no --command)"
        variables = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")
                        or k.startswith("OPENBLAS_")}, **environment}
        variables["PYTHONPATH"] = str(REPOSITORY_ROOT)
        variables.setdefault("PYTHONUNBUFFERED", "1")
        return {"argv": [sys.executable, "-m", "iris_tools.rollout", *(args or ["job"])], "environment": variables,
                "log": log, "container": None}

    def _attempt(self, name: str, index: int, attempt: dict[str, Any], plan: dict[str, Any], timeout_s: float) -> None:
        plan["log"].parent.mkdir(parents=True, exist_ok=True)
        with open(plan["log"], "ab") as log:
            try:
                process = subprocess.Popen(plan["argv"], env=plan["environment"], stdout=log, stderr=log,
                                           stdin=subprocess.DEVNULL, cwd=str(REPOSITORY_ROOT), start_new_session=True)
            except OSError as exc:
                self._ended(name, index, attempt, None, f"the container could not start: {exc}", final=True)
                return
        with self.lock:
            attempt["pid"] = process.pid
            attempt["process_started"] = start_time(process.pid)
            if plan["container"]:
                attempt["container"] = plan["container"]
            self.store.save()
        deadline = attempt["started"] + timeout_s
        why = ""
        while process.poll() is None:
            with self.lock:
                record = self.executions.get(name)
                cancelled = record is None or record["cancelled"]
            if cancelled or self.stopping.is_set() or time.time() > deadline:
                why = ("the execution was cancelled" if cancelled else "the local Cloud Run stopped"
                       if self.stopping.is_set() else f"The task has been cancelled because it exceeded its task "
                       f"timeout of {timeout_s:g} s")
                _stop(attempt, reap=False)
                break
            time.sleep(POLL_S)
        code = process.wait()
        if self.stopping.is_set():
            return  # its execution goes on at the next start (boot)
        stopped = bool(why)  # cancelled or timed out: not a success, whatever it exited with
        if not why:
            why = "" if code == 0 else (f"The container exited with an error (exit code {code})." if code > 0 else
                                        f"The container was killed by signal {-code}.")
        self._ended(name, index, attempt, code, why, final=False, succeeded=code == 0 and not stopped)

    def _ended(self, name: str, index: int, attempt: dict[str, Any], code: int | None, why: str, final: bool,
               succeeded: bool = False) -> None:
        with self.lock:
            attempt.update({"ended": time.time(), "exit_code": code, "why": why})
            record = self.executions.get(name)
            if record is not None:
                task = record["tasks"][index]
                if record["cancelled"]:  # however it ended once told to stop
                    task["state"] = "CANCELLED"
                elif succeeded:
                    task["state"] = "SUCCEEDED"
                elif final:
                    task["state"] = "FAILED"
                else:
                    task["state"] = "PENDING"  # retried while retries last (_run_task)
            self.store.save()

    def logs(self) -> list[tuple[Path, dict[str, str]]]:
        """Each attempt's log file with the labels its entries carry."""
        with self.lock:
            found = []
            for name, record in self.executions.items():
                for task in record["tasks"]:
                    for number, attempt in enumerate(task["attempts"]):
                        if attempt.get("log"):
                            found.append((Path(attempt["log"]), {
                                "job": record["job"], "execution": name, "task_index": str(task["index"]),
                                "task_attempt": str(number)}))
            return found


def _check_variables(items: Any, field: str) -> None:
    if not isinstance(items or [], list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]
            and isinstance(item.get("value", ""), str) for item in items or []):
        raise InvalidArgument.field(field, "a list of {name, value} with text for both")


def _apply_overrides(job_object: dict[str, Any], overrides: Any) -> None:
    """RunJobRequest.overrides: task count, timeout, and a container's args and env (gcloud's `execute --args
    --update-env-vars --tasks --task-timeout`)."""
    if not overrides:
        return
    if not isinstance(overrides, dict):
        raise InvalidArgument.field("overrides", "must be an object")
    execution = job_object["spec"]["template"]["spec"]
    spec = task_spec(job_object)
    if overrides.get("taskCount") is not None:
        execution["taskCount"] = overrides["taskCount"]
    if overrides.get("timeoutSeconds") is not None:
        spec["timeoutSeconds"] = overrides["timeoutSeconds"]
    found = overrides.get("containerOverrides") or []
    if not isinstance(found, list):
        raise InvalidArgument.field("overrides.containerOverrides", "must be a list")
    for override in found:
        container = spec["containers"][0]
        if not isinstance(override, dict):
            raise InvalidArgument.field("overrides.containerOverrides", "must be objects")
        _check_variables(override.get("env"), "overrides.containerOverrides.env")
        if override.get("clearArgs"):
            container["args"] = []
        if override.get("args"):
            container["args"] = list(override["args"])
        env = {item["name"]: item for item in container.get("env", []) or []}
        for item in override.get("env") or []:
            env[item["name"]] = item
        container["env"] = list(env.values())


def _task_ok(state: str) -> bool | None:
    return True if state == "SUCCEEDED" else False if state in ("FAILED", "CANCELLED") else None


def _task_message(task: dict[str, Any]) -> str:
    attempts = task["attempts"]
    if not attempts:
        return "The task is waiting to start."
    last = attempts[-1]
    if last.get("ended") is None:
        return f"Attempt {len(attempts)} is running."
    return last.get("why") or ("The task completed successfully." if last.get("exit_code") == 0 else "")


def _uid() -> str:
    return str(uuid.uuid4())


def _stop(attempt: dict[str, Any], reap: bool = True) -> None:
    """SIGTERM to an attempt's process group, SIGKILL after TERMINATION_GRACE_S (and its container, under docker).
    reap=False for a child of ours, whose Popen reads its exit status."""
    stop_group(attempt["pid"], TERMINATION_GRACE_S, reap=reap)
    if attempt.get("container"):  # the docker client gone, its container may not be
        subprocess.run([DOCKER, "kill", attempt["container"]], capture_output=True, timeout=30)
