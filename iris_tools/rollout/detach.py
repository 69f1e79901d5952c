"""`make rollout DETACH=1`: the rollout packed into a Cloud Run job beside the service, started, and left to run.

With the operator's gcloud, on either target:
1. refuse while a rollout runs; deploy the candidate (MODEL=) with no traffic behind its tag, as the foreground
   rollout would (the job has no gcloud: it is handed the revision); with MIN_AGREEMENT, the shadow check runs here,
   before the job, as it runs before the lock in the foreground;
2. `gcloud run jobs deploy <SERVICE>-rollout --image <TOOLS_IMAGE> --args job` with the rollout's settings as
   variables (those set here, and TARGET, PROJECT, REGION, REVISION), `--max-retries TASK_RETRIES`,
   `--task-timeout TASK_TIMEOUT_S`, `--service-account JOB_SERVICE_ACCOUNT`;
3. `gcloud run jobs execute ... --async`: prints the execution and how to follow and stop it, and returns.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from iris_tools import environment
from iris_tools.environment import Environment
from iris_tools.google.gcloud import Gcloud, GcloudError
from iris_tools.google.service_account import property_variable
from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import held
from iris_tools.rollout.records import Annotations

ROOT = Path(__file__).resolve().parents[2]
# Not handed to the job: the operator's side (the candidate by model, the split, the job's own settings, gcloud),
# and settings the job decides itself.
KEPT_HERE = {"MODEL", "SPLIT", "DETACH", "TOOLS_IMAGE", "TASK_RETRIES", "JOB_SERVICE_ACCOUNT", "GCLOUD",
             "MIN_AGREEMENT", "RUN_DIR", "TARGET", "PROJECT", "REGION", "REVISION"}
QUALITY_SETTINGS = ("LABELS", "OUTCOMES_TABLE", "OUTCOME_FRESHNESS")
LOCAL_PROPERTIES = ("api_endpoint_overrides/run", "api_endpoint_overrides/monitoring",
                    "api_endpoint_overrides/logging", "proxy/type", "proxy/address", "proxy/port")


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def tools_image(env: Environment) -> str:
    return env["TOOLS_IMAGE"] or f"{env['IMAGE']}-tools:{version()}"


def job_name(service: str) -> str:
    return f"{service}-rollout"


def job_environment(env: Environment, gcloud: Gcloud, revision: str | None, environ: dict[str, str]) -> dict[str, str]:
    """The variables the job's task gets: the rollout's settings given here, and where it is."""
    names = [v.name for v in environment.VARIABLES if (v.group in ("target", "rollout") or v.name in QUALITY_SETTINGS)
             and v.name not in KEPT_HERE]
    found = {name: environ[name].strip() for name in names if environ.get(name, "").strip()}
    found.update({"TARGET": env.target, "PROJECT": gcloud.project, "REGION": gcloud.region,
                  "TASK_TIMEOUT_S": f"{env['TASK_TIMEOUT_S']:g}"})
    if revision:
        found["REVISION"] = revision
    labels = env["LABELS"]
    if labels and labels != "feedback":
        if env.target == "cloudrun":
            raise RolloutError(f"LABELS={labels}: a file on this machine is not in the job's image; a detached "
                               f"rollout on Cloud Run reads labels from the service's feedback (LABELS=feedback)")
        found["LABELS"] = str(Path(labels).resolve())
    if env.target == "local":  # the job runs on this machine: its store, its records, and gcloud's endpoints here
        found["RUN_DIR"] = str(env["RUN_DIR"].resolve())
        for name in LOCAL_PROPERTIES:
            text = gcloud.property(name)
            if text:
                found[property_variable(name)] = text
    return found


def env_flag(variables: dict[str, str]) -> str:
    """--set-env-vars in gcloud's alternate-delimiter form (values may hold commas and spaces)."""
    text = "".join(f"{k}={v}" for k, v in variables.items())
    delimiter = next(d for d in "@|#;~^%" if d not in text)
    return f"^{delimiter}^" + delimiter.join(f"{k}={v}" for k, v in variables.items())


def detach(env: Environment, gcloud: Gcloud, service: CloudRunService, model: str | None, revision: str | None,
           say: Callable[[str], None], environ: dict[str, str], shadow_refuses: Callable[[str], bool]) -> int:
    settings = service.settings
    lock, live = held(Annotations.of(service.describe()), service)
    if lock is not None and live:
        raise RolloutError(f"a rollout of {lock.candidate} (from {lock.stable}) is running on service "
                           f"{settings.service} ({lock.who()}, at step {lock.step_text()}); `make rollout-status` "
                           f"follows it, `make rollback` stops it")
    if model:
        revision = service.deploy(model, f"{settings.image}:{model}", say)
    if revision is None and lock is None:
        raise RolloutError("name the candidate: MODEL=<name> (deploys iris:<name>) or REVISION=<revision>")
    if revision and shadow_refuses(revision):
        return 3
    name = job_name(settings.service)
    image = tools_image(env)
    flags = ["--image", image, "--args", "job", "--tasks", "1", "--max-retries", str(env["TASK_RETRIES"]),
             "--task-timeout", f"{int(env['TASK_TIMEOUT_S'])}s",
             "--set-env-vars", env_flag(job_environment(env, gcloud, revision, environ))]
    if env["JOB_SERVICE_ACCOUNT"]:
        flags += ["--service-account", env["JOB_SERVICE_ACCOUNT"]]
    say(f"deploying job {name} (image {image}) ...")
    waiting = f"; the candidate {revision} waits with no traffic" if revision else ""
    try:
        gcloud.run("run", "jobs", "deploy", name, *flags)
        execution = gcloud.run("run", "jobs", "execute", name, "--async", "--format=value(metadata.name)").strip()
    except GcloudError as exc:
        raise RolloutError(f"the rollout job did not start ({exc}): no traffic moved{waiting}. Is {image} built and "
                           f"pushed (make images; TOOLS_IMAGE names it)? make rollout DETACH=1 REVISION={revision or ''} "
                           f"starts it again, or make rollout REVISION={revision or ''} runs it here") from None
    what = f"the rollout of {revision}" if revision else f"the interrupted rollout of {lock.candidate}"
    say(f"started {what} on service {settings.service} as execution {execution} of job {name}; it runs without "
        f"this terminal.\n"
        f"  follow:  make rollout-status            (or gcloud run jobs executions describe {execution})\n"
        f"  logs:    gcloud run jobs logs read {name}\n"
        f"  stop:    make rollback                  (100% back on the stable revision; the job stops)\n"
        f"  abort:   gcloud run jobs executions cancel {execution}   (the same, from the job itself)")
    return 0
