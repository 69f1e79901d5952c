"""What a rollout emits as it goes; the state machine (walk.py) never prints or writes files itself.

Reporters turn the events into what each reader needs:
  Terminal      the lines a person reads (a live line redrawn in place on a terminal)
  RecordWriter  the Record on disk, written atomically at every event that changes it (the console and
                `make report` read it)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from iris_tools.google.monitoring import Figures
from iris_tools.local.state import write_atomically
from iris_tools.rollout.gate import Verdict
from iris_tools.rollout.printing import live_line, quality_text, summary
from iris_tools.rollout.records import Current, Plan, Record, Sample, StepResult


@dataclass(frozen=True)
class Said:
    """A plain message: deploying, warming up, resuming, a shadow's outcome."""

    text: str


@dataclass(frozen=True)
class Started:
    record: Record  # the new record, decision None
    resumed: bool


@dataclass(frozen=True)
class StepStarted:
    index: int
    plan: Plan
    percent: int
    started: float
    paused: bool = False


@dataclass(frozen=True)
class FiguresRead:
    index: int
    plan: Plan
    percent: int
    started: float
    at: float
    window: tuple[float, float]
    window_end: float
    hold_end: float
    candidate: Figures
    stable: Figures
    verdict: Verdict


@dataclass(frozen=True)
class FiguresIncomplete:
    index: int
    plan: Plan
    percent: int
    reason: str


@dataclass(frozen=True)
class StepEnded:
    plan: Plan
    result: StepResult
    line: str  # the verdict's own line, or who promoted a pause
    judged: bool = True  # False: a pause, promoted by a person


@dataclass(frozen=True)
class PairedJudged:
    """The paired check at 0% (rollout/paired.py): its verdict, before any user moves."""

    verdict: dict[str, Any]


@dataclass(frozen=True)
class Decided:
    """The rollout's end: promoted, rolled back, aborted, stopped, failed, or not rolled out (a shadow refused)."""

    decision: str
    message: str
    reason: str | None = None
    verdict: Verdict | None = None
    traffic: str | None = None  # after a failure: where traffic was left


Event = Said | Started | StepStarted | FiguresRead | FiguresIncomplete | StepEnded | PairedJudged | Decided
Emit = Callable[[Event], None]


def fan_out(*reporters: Emit) -> Emit:
    def emit(event: Event) -> None:
        for reporter in reporters:
            reporter(event)
    return emit


class Terminal:
    """The lines a person reads. On a terminal the live figures redraw one line; elsewhere each is a line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty() if hasattr(out, "isatty") else False
        self.drawing = False
        self.steps: list[StepResult] = []

    def _line(self, text: str) -> None:
        if self.drawing:
            print(file=self.out)
            self.drawing = False
        print(text, file=self.out, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Said):
            self._line(event.text)
        elif isinstance(event, StepStarted) and event.paused:
            self._line(f"step {event.index + 1}/{len(event.plan)}: paused at {event.percent}% until `make promote` "
                       f"(or `make rollback`)")
        elif isinstance(event, FiguresIncomplete):
            self._line(f"step {event.index + 1}/{len(event.plan)} {event.percent}%: figures incomplete "
                       f"({event.reason}); holding")
        elif isinstance(event, FiguresRead):
            text = live_line(event.index, len(event.plan), event.percent, max(0.0, event.window_end - event.at),
                             event.candidate, event.stable) + quality_text(event.verdict.quality)
            if self.live:
                print("\r" + text.ljust(118), end="", file=self.out, flush=True)
                self.drawing = True
            else:
                self._line(text)
        elif isinstance(event, StepEnded):
            result = event.result
            self.steps.append(result)
            share = f" at {result.percent}%" if event.judged else ""
            self._line(f"step {result.index + 1}/{len(event.plan)}{share}: {event.line}")
        elif isinstance(event, Decided):
            if self.steps and event.decision in ("promoted", "rolled back"):
                print(summary(self.steps), file=self.out)
            self._line(f"\n{event.message}")


class RecordWriter:
    """Keeps the Record and writes it, atomically, to its own file and to latest.json beside it, at the start, as
    each step starts, at each poll, after each step and at the decision: a rollout killed at any point leaves a
    record that says where it was."""

    def __init__(self, report_dir: Path, say: Callable[[str], None]) -> None:
        self.report_dir = report_dir
        self.say = say
        self.record: Record | None = None
        self._lock = threading.Lock()  # the notices' thread adds to the record too (noted)

    def noted(self, notice: dict[str, Any]) -> None:
        """A notice's fate (rollout/notify.py), kept in the record."""
        with self._lock:
            if self.record is not None:
                self.record.notices.append(notice)
                self._save()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: Event) -> None:
        record = self.record
        if isinstance(event, Started):
            self.record = event.record
        elif record is None:
            return
        elif isinstance(event, StepStarted):
            record.at_step, record.at_percent = event.index, event.percent
            record.current = Current(event.index, event.percent, event.started, paused=event.paused) \
                if event.paused else None
        elif isinstance(event, FiguresRead):
            quality = event.verdict.quality
            record.samples.append(Sample(event.at, event.percent, event.window, event.candidate, event.stable,
                                         {**{role: {key: quality[role].get(key) for key in
                                                    ("predictions", "labelled", "accuracy", "mae", "coverage")}
                                             for role in ("candidate", "stable")}, "seen": quality.get("seen")}
                                         if quality else None))
            record.current = Current(event.index, event.percent, event.started, event.window_end, event.hold_end,
                                     event.at, verdict=event.verdict)
        elif isinstance(event, StepEnded):
            record.steps.append(event.result)
        elif isinstance(event, PairedJudged):
            record.paired = event.verdict
        elif isinstance(event, Decided):
            record.decision, record.traffic = event.decision, event.traffic
            if event.verdict is not None:
                record.verdict = event.verdict
            if event.reason is not None:
                record.reason = event.reason
        else:
            return
        self._save()

    def _save(self) -> None:
        record = self.record
        assert record is not None
        record.updated = time.time()
        if record.finished:
            record.ended = record.updated
        text = json.dumps(record.to_json(), indent=1)
        write_atomically(Path(record.path), text)
        write_atomically(self.report_dir / "latest.json", text)
        if record.finished:
            self.say(f"figures of every step: {record.path}")

