"""What a rollout keeps, as typed values, each with one conversion to and from the form it is stored in.

On the service itself, as annotations (as Cloud Run keeps its own):

  iris-versions.dev/rollout      the Lock: the rollout in progress (candidate, stable, plan, the step reached,
                                 who runs it and since when). Only one at a time.
  iris-versions.dev/history      the revisions that reached 100%, oldest first (what `rollback` reads)
  iris-versions.dev/rolled-back  RolledBack entries (name, image, image digest, why): not given traffic again by
                                 rollback, SPLIT= or rollout unless FORCE=1; known by digest, so a new revision of
                                 the same image is barred too. One sent back unjudged is recorded barred: false

On this machine, as JSON: the Record of each rollout (RUN_DIR/rollout/<service>-<time>.json).

This is the only module that reads or writes those keys. A value that does not parse raises RecordError
naming its field.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iris_tools.google.monitoring import Figures
from iris_tools.local.processes import running
from iris_tools.rollout.gate import Thresholds, Verdict
from iris_tools.cli.failures import ToolError
from iris_tools.plan import PAUSE as PAUSE, Plan, Step as Step

LOCK_KEY = "iris-versions.dev/rollout"
HISTORY_KEY = "iris-versions.dev/history"
ROLLED_BACK_KEY = "iris-versions.dev/rolled-back"
KEEP = 20  # entries kept in the history and the rolled-back list


class RecordError(ToolError, ValueError):
    """A stored lock, entry or record that does not parse; the message names the field."""

    def __init__(self, what: str, field_name: str, problem: str) -> None:
        super().__init__(f"the {what} does not parse: field {field_name!r} {problem}")
        self.field = field_name


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _get(document: dict[str, Any], what: str, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """document[name], checked to be of `kind` (bool is never taken for a number); `default` when absent."""
    if name not in document or document[name] is None:
        if default is ...:
            raise RecordError(what, name, "is missing")
        return default
    found = document[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(found, bool) and bool not in kinds:
        raise RecordError(what, name, f"is {found!r}, not a {kinds[0].__name__}")
    if float in kinds and isinstance(found, int):
        return float(found)
    if not isinstance(found, kinds):
        raise RecordError(what, name, f"is {found!r}, not a {kinds[0].__name__}")
    return found


# ---------------------------------------------------------------- on the service


@dataclass
class Lock:
    """The rollout holding a service. `process_started` is its process's start time (clock ticks since boot,
    as /proc says), so a pid the kernel gave to another process since is never taken for the rollout."""

    id: str
    candidate: str
    stable: str
    plan: Plan
    step: int = -1  # the step reached (-1: none yet)
    host: str = ""
    pid: int = 0
    process_started: int | None = None
    started: float = 0.0
    updated: float = 0.0
    image: str | None = None
    digest: str | None = None
    paused: bool = False
    promoted: str | None = None  # who promoted a pause, and when
    execution: str | None = None  # the Cloud Run job execution running it (make rollout DETACH=1), or None

    WHAT = "rollout's lock (annotation iris-versions.dev/rollout)"

    def to_json(self) -> dict[str, Any]:
        document = {"id": self.id, "candidate": self.candidate, "stable": self.stable, "steps": self.plan.to_json(),
                    "step": self.step, "host": self.host, "pid": self.pid, "process_started": self.process_started,
                    "started": self.started, "updated": self.updated, "image": self.image, "digest": self.digest}
        if self.paused:
            document["paused"] = True
        if self.promoted:
            document["promoted"] = self.promoted
        if self.execution:
            document["execution"] = self.execution
        return document

    @classmethod
    def from_json(cls, document: Any) -> "Lock":
        what = cls.WHAT
        if not isinstance(document, dict):
            raise RecordError(what, "(whole)", f"is {document!r}, not an object")
        try:
            plan = Plan.from_json(document.get("steps"))
        except ValueError as exc:
            raise RecordError(what, "steps", str(exc)) from None
        step = _get(document, what, "step", int, -1)
        if not -1 <= step < len(plan):
            raise RecordError(what, "step", f"is {step}, not one of its {len(plan)} steps")
        return cls(id=_get(document, what, "id", str), candidate=_get(document, what, "candidate", str),
                   stable=_get(document, what, "stable", str), plan=plan, step=step,
                   host=_get(document, what, "host", str, ""), pid=_get(document, what, "pid", int, 0),
                   process_started=_get(document, what, "process_started", int, None),
                   started=_get(document, what, "started", float, 0.0),
                   updated=_get(document, what, "updated", float, 0.0),
                   image=_get(document, what, "image", str, None), digest=_get(document, what, "digest", str, None),
                   paused=_get(document, what, "paused", bool, False),
                   promoted=_get(document, what, "promoted", str, None) or None,
                   execution=_get(document, what, "execution", str, None) or None)

    @property
    def mine(self) -> bool:
        """Written on this host (its pid can be checked here)."""
        return self.host == socket.gethostname()

    @property
    def share(self) -> int:
        """The candidate's share at the step reached."""
        return self.plan.percent_at(self.step) if self.step >= 0 else 0

    def is_live(self, stale_after_s: float) -> bool:
        """Whether the rollout that wrote this lock still runs: on this host, its process exists, is not a zombie
        and started when the lock says; elsewhere, it moved within `stale_after_s`. A task of the job execution that
        wrote it is its retry: Cloud Run runs one attempt of a task at a time, so the attempt that wrote it has ended."""
        if self.execution and self.execution == os.environ.get("CLOUD_RUN_EXECUTION"):
            return False
        if self.mine:
            return self.pid > 0 and running(self.pid, self.process_started)
        return time.time() - self.updated < stale_after_s

    def step_text(self) -> str:
        if self.step < 0:
            return "none yet"
        if self.plan[self.step].pause:
            return f"{self.step + 1} of {len(self.plan)} (a pause: `make promote` goes on, `make rollback` aborts)"
        return f"{self.step + 1} of {len(self.plan)} ({self.plan[self.step].percent}%)"

    def who(self) -> str:
        if self.execution:
            return f"job execution {self.execution}, pid {self.pid} on {self.host}"
        return f"pid {self.pid} on {self.host}"

    def moved(self, **changes: Any) -> "Lock":
        return replace(self, updated=time.time(), **changes)


@dataclass(frozen=True)
class RolledBack:
    """A revision sent back from a rollout or by `make rollback`, known by its image digest."""

    revision: str
    image: str | None
    digest: str | None
    reason: str
    barred: bool = True  # False: sent back unjudged (too few requests, a failure), may be tried again
    at: str = ""

    WHAT = "rolled-back entry (annotation iris-versions.dev/rolled-back)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Any) -> "RolledBack":
        what = cls.WHAT
        if not isinstance(document, dict):
            raise RecordError(what, "(whole)", f"is {document!r}, not an object")
        return cls(revision=_get(document, what, "revision", str), image=_get(document, what, "image", str, None),
                   digest=_get(document, what, "digest", str, None), reason=_get(document, what, "reason", str, ""),
                   barred=_get(document, what, "barred", bool, True), at=_get(document, what, "at", str, ""))

    def bars(self, name: str, digest: str | None) -> bool:
        """Whether this entry bars a revision of `name` running `digest` (by digest; by name when none is known)."""
        if not self.barred:
            return False
        return bool(digest and self.digest == digest) or (not self.digest and self.revision == name)

    def text(self) -> str:
        return (f"{self.revision} ({self.image}, {self.digest or 'no digest'}) was rolled back at {self.at}: "
                f"{self.reason}; give it traffic again only with FORCE=1")


@dataclass
class Annotations:
    """The rollout's three annotations of one service, parsed. A lock that does not parse (anyone may edit an
    annotation) is kept as `lock_error`, so each command can say so and `make rollback` can still undo it."""

    lock: Lock | None = None
    history: list[str] = field(default_factory=list)
    rolled_back: list[RolledBack] = field(default_factory=list)
    lock_error: RecordError | None = None

    @classmethod
    def of(cls, service: dict[str, Any]) -> "Annotations":
        """From a service as the Admin API returns it. RecordError when the history or the rolled-back list is
        there but does not parse."""
        stored = (service.get("metadata") or {}).get("annotations") or {}

        def loaded(key: str, what: str) -> Any:
            raw = stored.get(key)
            if raw is None:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise RecordError(what, "(whole)", f"is not JSON: {raw[:80]!r}") from None

        history = loaded(HISTORY_KEY, "history (annotation iris-versions.dev/history)") or []
        if not isinstance(history, list) or not all(isinstance(name, str) for name in history):
            raise RecordError("history (annotation iris-versions.dev/history)", "(whole)",
                              f"is {history!r}, not a list of revision names")
        entries = loaded(ROLLED_BACK_KEY, RolledBack.WHAT) or []
        if not isinstance(entries, list):
            raise RecordError(RolledBack.WHAT, "(whole)", f"is {entries!r}, not a list")
        found = cls(None, history, [RolledBack.from_json(entry) for entry in entries])
        try:
            lock = loaded(LOCK_KEY, Lock.WHAT)
            found.lock = None if lock is None else Lock.from_json(lock)
        except RecordError as exc:
            found.lock_error = exc
        return found

    def barring(self, name: str, digest: str | None) -> RolledBack | None:
        """The newest entry that bars a revision of `name` running `digest`, or None."""
        return next((entry for entry in reversed(self.rolled_back) if entry.bars(name, digest)), None)

    def with_history(self, name: str) -> list[str]:
        """The history with `name` reaching 100% now (kept to KEEP entries; not repeated)."""
        return self.history[-KEEP:] if self.history and self.history[-1] == name else [*self.history, name][-KEEP:]

    def with_rolled_back(self, entry: RolledBack) -> list[RolledBack]:
        return [*self.rolled_back, entry][-KEEP:]


def annotation_changes(*, lock: Lock | None | bool = False, history: list[str] | None = None,
                       rolled_back: list[RolledBack] | None = None) -> dict[str, str | None]:
    """Annotation key -> its new text (None removes it), for what is given: lock=None removes the lock,
    lock=False (the default) leaves it alone."""
    changes: dict[str, str | None] = {}
    if lock is None:
        changes[LOCK_KEY] = None
    elif isinstance(lock, Lock):
        changes[LOCK_KEY] = _compact(lock.to_json())
    if history is not None:
        changes[HISTORY_KEY] = _compact(history)
    if rolled_back is not None:
        changes[ROLLED_BACK_KEY] = _compact([entry.to_json() for entry in rolled_back])
    return changes


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------- on this machine: the record of a rollout


@dataclass
class StepResult:
    """One step as it ended: its share, when, each revision's figures and the verdict."""

    percent: int
    started: float
    ended: float | None = None
    candidate: Figures = field(default_factory=Figures)
    stable: Figures = field(default_factory=Figures)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    index: int = -1  # its place in the plan (a resumed rollout's record starts part way)
    quality: dict[str, Any] | None = None  # with LABELS: the quality check's verdict (its figures and reasons)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "StepResult":
        what = "rollout record's step"
        return cls(percent=_get(document, what, "percent", int), started=_get(document, what, "started", float),
                   ended=_get(document, what, "ended", float, None),
                   candidate=Figures.from_json(document.get("candidate")),
                   stable=Figures.from_json(document.get("stable")),
                   verdict=_get(document, what, "verdict", str, ""), reasons=_get(document, what, "reasons", list, []),
                   index=_get(document, what, "index", int, -1),
                   quality=_get(document, what, "quality", dict, None))


@dataclass
class Sample:
    """One read of the figures during a step (what report's rollout.png draws)."""

    at: float
    percent: int
    window: tuple[float, float]
    candidate: Figures
    stable: Figures
    quality: dict[str, Any] | None = None  # with LABELS: each revision's labels back and accuracy at this read

    def to_json(self) -> dict[str, Any]:
        document = {"at": self.at, "percent": self.percent, "window": list(self.window),
                    "candidate": asdict(self.candidate), "stable": asdict(self.stable)}
        if self.quality is not None:
            document["quality"] = self.quality
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "Sample":
        what = "rollout record's sample"
        window = _get(document, what, "window", list)
        return cls(at=_get(document, what, "at", float), percent=_get(document, what, "percent", int),
                   window=(float(window[0]), float(window[1])), candidate=Figures.from_json(document.get("candidate")),
                   stable=Figures.from_json(document.get("stable")),
                   quality=_get(document, what, "quality", dict, None))


@dataclass
class Current:
    """The step under way, as of the last poll: what a watcher (the console) shows live."""

    step: int
    percent: int
    started: float
    window_end: float | None = None
    hold_end: float | None = None
    at: float | None = None
    paused: bool = False
    verdict: Verdict | None = None

    def to_json(self) -> dict[str, Any]:
        document = {"step": self.step, "percent": self.percent, "started": self.started, "window_end": self.window_end,
                    "hold_end": self.hold_end, "at": self.at, "paused": self.paused}
        if self.verdict is not None:
            document["verdict"] = self.verdict.as_json()
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "Current":
        what = "rollout record's current step"
        verdict = document.get("verdict")
        return cls(step=_get(document, what, "step", int), percent=_get(document, what, "percent", int),
                   started=_get(document, what, "started", float),
                   window_end=_get(document, what, "window_end", float, None),
                   hold_end=_get(document, what, "hold_end", float, None), at=_get(document, what, "at", float, None),
                   paused=_get(document, what, "paused", bool, False),
                   verdict=Verdict.from_json(verdict) if isinstance(verdict, dict) else None)


@dataclass
class Record:
    """A rollout's record (RUN_DIR/rollout/<service>-<time>.json and latest.json): its plan and thresholds, every
    step's figures and verdict, the samples, and the decision with its reason. Written as it goes."""

    id: str
    service: str
    target: str
    candidate: str
    stable: str
    plan: Plan
    thresholds: Thresholds
    path: str
    started: float
    steps: list[StepResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    decision: str | None = None  # promoted | rolled back | aborted | stopped | failed
    reason: str | None = None
    verdict: Verdict | None = None
    updated: float | None = None
    ended: float | None = None
    at_step: int | None = None
    at_percent: int | None = None
    current: Current | None = None
    traffic: str | None = None  # after a failure: where traffic was left
    paired: dict[str, Any] | None = None  # with LABELS: the paired check at 0% (rollout/paired.py), before any step
    notices: list[dict[str, Any]] = field(default_factory=list)  # with NOTIFY_URL: each notice's fate (notify.py)

    WHAT = "rollout record"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "target": self.target, "candidate": self.candidate,
                "stable": self.stable, "plan": self.plan.to_json(), "thresholds": asdict(self.thresholds),
                "path": self.path, "started": self.started, "steps": [step.to_json() for step in self.steps],
                "samples": [sample.to_json() for sample in self.samples], "decision": self.decision,
                "reason": self.reason, "verdict": None if self.verdict is None else self.verdict.as_json(),
                "updated": self.updated, "ended": self.ended, "at_step": self.at_step, "at_percent": self.at_percent,
                "current": None if self.current is None else self.current.to_json(), "traffic": self.traffic,
                "paired": self.paired, "notices": self.notices}

    @classmethod
    def from_json(cls, document: Any) -> "Record":
        what = cls.WHAT
        if not isinstance(document, dict):
            raise RecordError(what, "(whole)", "is not an object")
        try:
            plan = Plan.from_json(document.get("plan"))
        except ValueError as exc:
            raise RecordError(what, "plan", str(exc)) from None
        try:
            steps = [StepResult.from_json(step) for step in _get(document, what, "steps", list, [])]
            samples = [Sample.from_json(sample) for sample in _get(document, what, "samples", list, [])]
            current = document.get("current")
            verdict = document.get("verdict")
            return cls(id=_get(document, what, "id", str), service=_get(document, what, "service", str),
                       target=_get(document, what, "target", str, ""), candidate=_get(document, what, "candidate", str),
                       stable=_get(document, what, "stable", str), plan=plan,
                       thresholds=Thresholds(**_get(document, what, "thresholds", dict, {})),
                       path=_get(document, what, "path", str, ""), started=_get(document, what, "started", float),
                       steps=steps, samples=samples, decision=_get(document, what, "decision", str, None),
                       reason=_get(document, what, "reason", str, None),
                       verdict=Verdict.from_json(verdict) if isinstance(verdict, dict) else None,
                       updated=_get(document, what, "updated", float, None),
                       ended=_get(document, what, "ended", float, None),
                       at_step=_get(document, what, "at_step", int, None),
                       at_percent=_get(document, what, "at_percent", int, None),
                       current=Current.from_json(current) if isinstance(current, dict) else None,
                       traffic=_get(document, what, "traffic", str, None),
                       paired=_get(document, what, "paired", dict, None),
                       notices=_get(document, what, "notices", list, []))
        except (TypeError, AttributeError, IndexError) as exc:
            raise RecordError(what, "(a part)", f"has the wrong shape ({exc})") from None

    @classmethod
    def read(cls, path: Path) -> "Record":
        """The record in `path`; RecordError if it cannot be read or does not parse."""
        try:
            return cls.from_json(json.loads(path.read_text()))
        except OSError as exc:
            raise RecordError(cls.WHAT, "(file)", f"cannot be read: {exc.strerror}") from None
        except ValueError as exc:
            if isinstance(exc, RecordError):
                raise
            raise RecordError(cls.WHAT, "(file)", "is not JSON") from None

    @property
    def finished(self) -> bool:
        return self.decision is not None

    def reason_text(self) -> str:
        return self.reason or "; ".join(self.verdict.reasons if self.verdict else [])

