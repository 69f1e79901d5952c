"""Notices of what a rollout does, POSTed as JSON to NOTIFY_URL, so that nobody has to watch it.

One notice when the rollout starts, for the paired check at 0%, for each step passed, for a step held past its
window, for a pause and its promotion, and for the end (promoted, rolled back, aborted, stopped, failed):

    {"service": "iris", "candidate": "iris-00002-abc", "stable": "iris-00001-xyz", "event": "step passed",
     "step": 1, "steps": 3, "percent": 5, "decision": "promote", "figures": {"candidate": {...}, "stable": {...}},
     "reasons": [...], "console": "http://127.0.0.1:5080/", "at": 1796537568.2,
     "text": "iris: step 1/3 at 5% passed; iris-00002-abc ..."}

`text` says it all in one line, so a Slack or Google Chat incoming webhook shows it as it is. Notices go out in order
from a thread of their own: the rollout never waits for a receiver. A notice that fails (a refusal, no answer in
NOTIFY_TIMEOUT_S) is tried again with backoff, up to NOTIFY_ATTEMPTS times; each notice's fate (delivered or not, the
attempts, the last error) goes into the rollout's record, so a verdict is never lost with its notice. At the end the
rollout gives its notices up to NOTIFY_FLUSH_S to go out before it exits.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from iris_tools.rollout.events import (Decided, Event, FiguresRead, PairedJudged, Started, StepEnded, StepStarted)

NOTIFY_ATTEMPTS = 5
NOTIFY_TIMEOUT_S = 10.0
NOTIFY_FLUSH_S = 30.0
BACKOFF_S = 0.5  # doubled after each failed attempt


class Notifier:
    """A reporter (an Emit): events in, notices out. `noted(entry)` is told each notice's fate (the record keeps it)."""

    def __init__(self, url: str, noted: Callable[[dict[str, Any]], None], console: str | None = None,
                 attempts: int = NOTIFY_ATTEMPTS, timeout_s: float = NOTIFY_TIMEOUT_S, backoff_s: float = BACKOFF_S,
                 flush_s: float = NOTIFY_FLUSH_S) -> None:
        self.url = url
        self.noted = noted
        self.console = console
        self.attempts, self.timeout_s, self.backoff_s, self.flush_s = max(1, attempts), timeout_s, backoff_s, flush_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._identity: dict[str, Any] = {}
        self._held: set[int] = set()  # steps whose hold past the window was told already
        self._sender: threading.Thread | None = None

    # ------------------------------------------------------------------ events -> notices

    def __call__(self, event: Event) -> None:
        notice = self._notice_of(event)
        if notice is not None:
            self._send(notice)
        if isinstance(event, Decided):
            self.flush()

    def _notice_of(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Started):
            record = event.record
            self._identity = {"service": record.service, "candidate": record.candidate, "stable": record.stable,
                              "steps": len(record.plan)}
            how = "resumed" if event.resumed else "started"
            return self._notice(how, f"rollout {how}: {record.candidate} replacing {record.stable} in steps "
                                     f"{' '.join(str(s) for s in record.plan.to_json())}")
        if not self._identity:
            return None
        if isinstance(event, PairedJudged):
            decision = str(event.verdict.get("decision"))
            return self._notice("paired check", f"paired check at 0%: {decision}"
                                + _reasons(event.verdict.get("reasons")), decision=decision,
                                reasons=list(event.verdict.get("reasons") or []))
        if isinstance(event, StepStarted) and event.paused:
            return self._notice("paused", f"step {event.index + 1}/{len(event.plan)}: paused at {event.percent}% "
                                          f"until `make promote` (or `make rollback`)",
                                step=event.index + 1, percent=event.percent)
        if isinstance(event, FiguresRead) and event.verdict.decision == "hold" and event.at >= event.window_end \
                and event.index not in self._held:
            self._held.add(event.index)
            return self._notice("held", f"step {event.index + 1}/{len(event.plan)} at {event.percent}% held past "
                                        f"its window" + _reasons(event.verdict.reasons),
                                step=event.index + 1, percent=event.percent, decision="hold",
                                reasons=list(event.verdict.reasons),
                                figures={"candidate": asdict(event.candidate), "stable": asdict(event.stable)})
        if isinstance(event, StepEnded):
            result = event.result
            if event.judged and result.verdict != "promote":
                return None  # a step that ends the rollout: its end (Decided) says so, once
            what = "step passed" if event.judged else "promoted by a person"
            return self._notice(what, f"step {result.index + 1}/{len(event.plan)} at {result.percent}%: "
                                      f"{event.line}", step=result.index + 1, percent=result.percent,
                                decision=result.verdict, reasons=list(result.reasons),
                                figures={"candidate": asdict(result.candidate), "stable": asdict(result.stable)})
        if isinstance(event, Decided):
            verdict = event.verdict
            return self._notice(event.decision, event.message.strip(), decision=event.decision,
                                reasons=list(verdict.reasons) if verdict is not None else
                                ([event.reason] if event.reason else []),
                                figures={"candidate": asdict(verdict.candidate), "stable": asdict(verdict.stable)}
                                if verdict is not None else None, traffic=event.traffic)
        return None

    def _notice(self, what: str, text: str, **fields: Any) -> dict[str, Any]:
        service = self._identity.get("service", "?")
        return {**self._identity, "event": what, "step": None, "percent": None, "decision": None, "figures": None,
                "reasons": [], **fields, "console": self.console, "at": round(time.time(), 3),
                "text": f"{service}: {text}"}

    # ------------------------------------------------------------------ delivery

    def _send(self, notice: dict[str, Any]) -> None:
        if self._sender is None:
            self._sender = threading.Thread(target=self._deliver_all, name="notices", daemon=True)
            self._sender.start()
        self._queue.put(notice)

    def _deliver_all(self) -> None:
        while True:
            notice = self._queue.get()
            if notice is None:
                self._queue.task_done()
                return
            try:
                self.noted(self._delivered(notice))
            finally:
                self._queue.task_done()

    def _delivered(self, notice: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(notice).encode()
        error, wait = "", self.backoff_s
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                return {"event": notice["event"], "at": notice["at"], "delivered": True, "attempts": attempt}
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                time.sleep(wait)
                wait *= 2
        return {"event": notice["event"], "at": notice["at"], "delivered": False, "attempts": self.attempts,
                "error": error[:200]}

    def flush(self) -> None:
        """Wait up to flush_s for the notices queued to go out (the rollout is ending)."""
        if self._sender is None:
            return
        deadline = time.monotonic() + self.flush_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


def _reasons(reasons: Any) -> str:
    found = [str(reason) for reason in (reasons or []) if reason]
    return f": {'; '.join(found)}" if found else ""
