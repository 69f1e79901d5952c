"""The rollout as a Cloud Run job's task (`python -m iris_tools.rollout job`, what `make rollout DETACH=1` starts).

The same state machine as the foreground rollout (walk.py), one record in the service's annotations, the same
lock and compare-and-swap writes. What differs is around it:

- Access: the job's service account through Google's default credentials (service_account.py), no gcloud.
- A retry resumes: the lock names the execution that took it (CLOUD_RUN_EXECUTION), and an attempt of the same
  execution takes it over at once (Cloud Run runs one attempt of a task at a time). A retry that finds no lock of its
  execution starts nothing: the rollout it was started for ended (it says how) or was stopped by a person.
- The end of the task is a fail-safe: SIGTERM (a cancelled execution, or Cloud Run ending a task at its timeout) and
  TASK_TIMEOUT_S - TIMEOUT_MARGIN_S (the task's own deadline, before Cloud Run's) stop the rollout as a failure
  does: 100% back on the stable revision, the record and the notices saying why. After the verdict (in the rollback
  window), the signal only ends the task.
- Exit status: 0 once the rollout reached a verdict and left traffic settled (promoted, rolled back, stopped,
  aborted, or failed with 100% back on the stable revision), so Cloud Run does not run a decided rollout again;
  1 when it was refused before it started, or could not put traffic back (a retry tries again).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TextIO

from iris_tools.environment import Environment, value
from iris_tools.local.processes import age_s
from iris_tools.google.monitoring import Monitoring
from iris_tools.google.service_account import ServiceAccount
from iris_tools.quality.sources import OutcomeReader, store_for
from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.events import Decided, Emit, Event, RecordWriter, Terminal, fan_out
from iris_tools.rollout.notify import Notifier
from iris_tools.rollout.records import Annotations
from iris_tools.rollout.settings import RolloutSettings
from iris_tools.rollout.split import Split
from iris_tools.rollout.walk import Rollout

TIMEOUT_MARGIN_S = 60.0  # the task ends its rollout this long before its timeout (or a tenth of it, if less)
EXIT_SETTLED, EXIT_UNSETTLED = 0, 1


class TaskEnding(Exception):
    """The task is being ended (cancelled, or at its timeout): the rollout stops and puts users back."""


class Verdicts:
    """Remembers the rollout's Decided event (what the exit status and the signal handler go by)."""

    def __init__(self) -> None:
        self.decided: Decided | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Decided):
            self.decided = event


def execution() -> str | None:
    return os.environ.get("CLOUD_RUN_EXECUTION") or None


def attempt() -> int:
    try:
        return int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0"))
    except ValueError:
        return 0


def install_fail_safe(verdicts: Verdicts, timeout_s: float | None) -> None:
    """SIGTERM, and SIGALRM at the task's own deadline: TaskEnding while the rollout has no verdict (walk.py's fail-safe
    puts users back), a plain exit after it. Either fires once: a second signal never interrupts the restore."""
    def ending(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        if verdicts.decided is not None:
            raise SystemExit(EXIT_SETTLED)
        why = ("the task's timeout is near (TASK_TIMEOUT_S)" if signum == signal.SIGALRM else
               "the task was told to stop (SIGTERM: the execution was cancelled, or reached its task timeout)")
        raise TaskEnding(why)

    signal.signal(signal.SIGTERM, ending)
    signal.signal(signal.SIGALRM, ending)
    if timeout_s:
        # Cloud Run counts the timeout from the container's start: the interpreter's start and imports (seconds on
        # a busy machine) are already spent
        margin = min(TIMEOUT_MARGIN_S, timeout_s / 10)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, timeout_s - margin - age_s(os.getpid())))


def ended_without_us(service: CloudRunService, revision: str | None) -> str:
    """A retry finding no lock of its execution: what became of the rollout (it starts nothing)."""
    document = service.describe()
    annotations = Annotations.of(document)
    split = Split.of(document)
    if revision and split.whole() == revision:
        return f"{revision} serves 100% of service {service.name}: the rollout was promoted; nothing to resume"
    entry = next((e for e in reversed(annotations.rolled_back) if e.revision == revision), None)
    if entry is not None:
        return f"{revision} was rolled back ({entry.reason}); traffic: {split}; nothing to resume"
    return (f"no rollout of execution {execution()} is recorded on service {service.name} (traffic: {split}): it "
            f"was stopped by a person, or ended before it took the service; nothing to resume")


def run_job(env: Environment, settings: RolloutSettings, out=sys.stdout) -> int:
    """The task's rollout of REVISION (or the interrupted one), reporting as the foreground rollout does."""
    verdicts = Verdicts()
    install_fail_safe(verdicts, value("TASK_TIMEOUT_S") if os.environ.get("TASK_TIMEOUT_S") else None)
    try:
        return _run(env, settings, verdicts, lambda text: print(text, file=out, flush=True), out)
    except TaskEnding as exc:  # before the rollout took the service (after it, walk.py's fail-safe has it)
        raise RolloutError(f"{exc}; the rollout had not started and changed nothing") from None


def _run(env: Environment, settings: RolloutSettings, verdicts: Verdicts, say: Callable[[str], None],
         out: TextIO) -> int:
    account = ServiceAccount(env.target, env["PROJECT"], env["REGION"])
    service = CloudRunService(account, settings)
    described = service.describe()
    account.audience = described.get("status", {}).get("url")
    revision = env["REVISION"]
    say(f"rollout job: execution {execution()}, attempt {attempt() + 1}, service {settings.service} in "
        f"{account.project}/{account.region} as the job's service account")
    if attempt() > 0:
        lock = Annotations.of(described).lock
        if lock is None or lock.execution != execution():
            say(ended_without_us(service, revision))
            return EXIT_SETTLED
        revision = lock.candidate
    run_dir = env["RUN_DIR"]
    report_dir = run_dir / "rollout"
    writer = RecordWriter(report_dir, say)
    reporters: list[Emit] = [writer, Terminal(out), verdicts]
    if env["NOTIFY_URL"]:
        # the console runs where the operator runs it: on this machine only when the job runs here (locally)
        console = f"http://127.0.0.1:{value('CONSOLE_PORT')}/" if env.target == "local" else None
        reporters.append(Notifier(env["NOTIFY_URL"], writer.noted, console=console))
    outcomes = (OutcomeReader(store_for(account, run_dir, env["OUTCOMES_TABLE"]), settings.service, settings.labels)
                if settings.labels else None)
    Rollout(service, Monitoring.from_gcloud(account), report_dir, fan_out(*reporters), outcomes).run(None, revision)
    decided = verdicts.decided
    if decided is None or (decided.traffic or "").startswith("NOT RESTORED"):
        return EXIT_UNSETTLED
    return EXIT_SETTLED
