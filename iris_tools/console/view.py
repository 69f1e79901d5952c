"""What the console shows, read through the rollout's own code: the service and its revisions from the Admin API,
per-revision figures from timeSeries.list, the rollout's lock (an annotation) and records, the latest shadow.

Every read is plain data for JSON; nothing here writes. The actions (actions.py) go through the command-line
tools' functions, so the page and the commands refuse the same things with the same words.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from iris_tools.google.api import ApiError
from iris_tools.google.monitoring import Monitoring
from iris_tools.rollout.cloud_run import CloudRunService, condition, digest_of, image_of, model_of, name_of, tags_of
from iris_tools.rollout.gate import Verdict
from iris_tools.rollout.lock import held
from iris_tools.rollout.records import Annotations, Current, Record, RecordError
from iris_tools.rollout.split import Split

RECORDS_SHOWN = 8  # the last rollouts listed


def revision_row(annotations: Annotations, revision: dict[str, Any], split: Split,
                 tags: dict[str, list[dict[str, str]]], instances: dict[str, int] | None = None) -> dict[str, Any]:
    name = name_of(revision)
    ready = condition(revision)
    entry = annotations.barring(name, digest_of(revision))
    return {"name": name, "model": model_of(image_of(revision) or ""), "image": image_of(revision),
            "digest": digest_of(revision), "created": revision["metadata"].get("creationTimestamp"),
            "ready": ready.get("status", "Unknown"), "reason": ready.get("reason"), "message": ready.get("message"),
            "percent": split.percent(name), "tags": tags.get(name, []), "instances": instances,
            "barred": None if entry is None else {"at": entry.at, "reason": entry.reason}}


def split_rows(split: Split, models: dict[str, str | None],
               tags: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """The traffic as the service reports it: one row per revision with a share, largest first, tags named."""
    return [{"revision": name, "model": models.get(name), "percent": percent, "tags": tags.get(name, [])}
            for name, percent in sorted(split.shares, key=lambda item: (-item[1], item[0]))]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _record(path: Path) -> Record | None:
    """A record on disk, or None when it is torn or not one (a rollout writing, a file edited by hand)."""
    try:
        return Record.read(path)
    except RecordError:
        return None


class View:
    """The page's data for one target (local or cloudrun), any of its services."""

    def __init__(self, service: CloudRunService, monitoring: Monitoring, run_dir: Path, period_s: float) -> None:
        self.service = service
        self.monitoring = monitoring
        self.run_dir = run_dir
        self.period_s = period_s

    def for_service(self, name: str | None) -> CloudRunService:
        """The Service for `name` (the configured one when None), sharing the API client."""
        if not name or name == self.service.name:
            return self.service
        return CloudRunService(self.service.gcloud, replace(self.service.settings, service=name), api=self.service.api)

    def services(self) -> list[str]:
        listing = self.service.api.call("GET", self.service.path.rsplit("/", 1)[0])
        names = sorted(item["metadata"]["name"] for item in listing.get("items", []))
        return names or [self.service.name]

    def state(self, name: str | None) -> dict[str, Any]:
        target = self.for_service(name)
        service = target.describe()
        revisions = target.revisions()
        split = Split.of(service)
        tags = tags_of(service)
        annotations = Annotations.of(service)
        instances = self._instances(target.name)
        rows = [revision_row(annotations, revision, split, tags, instances.get(name_of(revision)))
                for revision in revisions]
        models = {row["name"]: row["model"] for row in rows}
        ready = condition(service)
        return {
            "target": target.gcloud.target, "service": target.name, "url": service["status"].get("url"),
            "services": self.services(), "now": time.time(),
            "ready": {"status": ready.get("status", "Unknown"), "reason": ready.get("reason"),
                      "message": ready.get("message")},
            "split": split_rows(split, models, tags), "revisions": rows,
            "history": annotations.history, "rolled_back": [entry.to_json() for entry in annotations.rolled_back][::-1],
            "rollout": self._rollout(target, annotations),
            "records": self._records(target.name), "shadow": self._shadow(target.name),
            "report": (self.run_dir / "report" / "compare.png").is_file(),
        }

    def _instances(self, service: str) -> dict[str, dict[str, int]]:
        """revision -> its instances by state, as Monitoring last reported them; {} when it cannot say."""
        try:
            return self.monitoring.instances(service, time.time())
        except ApiError:
            return {}

    def _rollout(self, target: CloudRunService, annotations: Annotations) -> dict[str, Any] | None:
        """The rollout holding the service (its lock), with this machine's record of it when there is one: the
        steps, the one reached, and the live verdict of the step under way. A lock that does not parse (anyone may
        edit an annotation) is shown as such, with no steps."""
        if annotations.lock_error is not None:
            return {"candidate": None, "stable": None, "state": "unreadable", "live": False, "steps": [], "index": -1,
                    "text": str(annotations.lock_error), "current": None, "thresholds": None}
        lock, live = held(annotations, target)
        if lock is None:
            return None
        record = _record(self.run_dir / "rollout" / "latest.json")
        if record is None or record.id != lock.id or record.finished:  # another rollout's
            record = None
        current = record.current if record else None
        if current and current.step != lock.step:
            current = None
        verdicts = {step.index: step.verdict for step in record.steps} if record else {}
        state = "paused" if lock.paused else ("running" if live else "interrupted")
        return {"candidate": lock.candidate, "stable": lock.stable, "state": state, "live": live,
                "steps": [{"step": i, "percent": lock.plan.percent_at(i), "pause": step.pause,
                           "verdict": verdicts.get(i)} for i, step in enumerate(lock.plan.steps)],
                "index": lock.step, "text": lock.step_text(), "host": lock.host, "pid": lock.pid,
                "execution": lock.execution,
                "started": lock.started, "updated": lock.updated, "promoted": lock.promoted,
                "current": _current(current), "thresholds": asdict(record.thresholds) if record else None,
                "quality_timeline": _quality_timeline(record), "paired": _paired(record)}

    def _records(self, service: str) -> list[dict[str, Any]]:
        """This machine's last RECORDS_SHOWN rollout records of `service`, newest first."""
        paths = sorted((self.run_dir / "rollout").glob(f"{service}-*.json"), reverse=True)  # named by start time
        found: list[dict[str, Any]] = []
        for path in paths:
            record = _record(path)
            if record is None or record.service != service:  # iris-canary-... is not iris's
                continue
            if len(found) == RECORDS_SHOWN:
                break
            found.append({"file": path.name, "candidate": record.candidate, "stable": record.stable,
                          "decision": record.decision or "running or interrupted", "started": record.started,
                          "ended": record.ended, "reason": record.reason_text(),
                          "steps": [{"percent": s.percent, "verdict": s.verdict} for s in record.steps],
                          "paired": _paired(record)})
        return found

    def _shadow(self, service: str) -> dict[str, Any] | None:
        report = _read_json(self.run_dir / "report" / "shadow.json")
        if not report or report.get("service") != service:
            return None
        keys = ("stable", "candidate", "n", "task", "agreement", "agreement_ci95", "failed_requests", "replayed",
                "classes", "confusion", "class_shift", "mean_absolute_difference", "mean_absolute_difference_ci95",
                "mean_difference", "mean_difference_ci95", "largest_absolute_difference", "latency")
        shown = {key: report.get(key) for key in keys}
        shown["written"] = (self.run_dir / "report" / "shadow.json").stat().st_mtime
        return shown

    def figures(self, name: str | None, minutes: float) -> dict[str, Any]:
        """Per revision, per period, over the last `minutes`: requests/s, 5xx rate, p50 and p99."""
        target = self.for_service(name)
        end = time.time() - target.settings.delay_seconds
        start = end - 60 * minutes
        timeline = self.monitoring.timeline(target.name, start, end, self.period_s)
        return {"service": target.name, "start": start, "end": end, "period_s": self.period_s,
                "delay_s": target.settings.delay_seconds,
                "revisions": {revision: [[p.at, round(p.requests / p.period_s, 3),
                                          round(p.errors / p.requests, 4) if p.requests else None,
                                          _finite(p.p50_ms), _finite(p.p99_ms)] for p in points]
                              for revision, points in timeline.items()}}

    def report_png(self) -> Path | None:
        path = self.run_dir / "report" / "compare.png"
        return path if path.is_file() else None


def _finite(ms: float | None) -> float | None:
    """A percentile for JSON: one in the overflow bucket (infinite) is not charted."""
    return None if ms is None or ms == float("inf") else ms


def _quality_timeline(record: Record | None) -> dict[str, list[list[float | int | None]]]:
    """With LABELS: revision -> [[at, accuracy, labels back]] at each read of the rollout under way, for its charts."""
    found: dict[str, list[list[float | int | None]]] = {}
    for sample in (record.samples if record else []):
        if sample.quality:
            for role, name in (("candidate", record.candidate), ("stable", record.stable)):
                side = sample.quality.get(role) or {}
                found.setdefault(name, []).append([sample.at, side.get("accuracy"), side.get("labelled", 0)])
    return found


def _paired(record: Record | None) -> dict[str, Any] | None:
    """With LABELS: the paired check at 0% (before any user was moved): its decision, on how many labelled answers
    replayed, and why."""
    paired = record.paired if record else None
    if not paired:
        return None
    reasons = paired.get("reasons")
    return {"decision": str(paired.get("decision", "")), "task": paired.get("task"), "n": paired.get("n"),
            "reasons": [str(reason) for reason in reasons] if isinstance(reasons, list) else []}


def _current(current: Current | None) -> dict[str, Any] | None:
    """The step under way: when it started, when its window and its hold end, its live verdict and the limits the
    candidate's figures are held to."""
    if not current:
        return None
    verdict = current.verdict or Verdict("")
    thresholds, stable = verdict.thresholds, verdict.stable
    limit = thresholds.latency_limit(stable.p99_ms) if stable.p99_ms is not None and current.verdict else None
    return {"step": current.step, "percent": current.percent, "started": current.started,
            "window_end": current.window_end, "hold_end": current.hold_end, "at": current.at, "paused": current.paused,
            "decision": verdict.decision or None, "reasons": verdict.reasons, "quality": verdict.quality,
            "candidate": asdict(verdict.candidate) if current.verdict else None, "stable": asdict(stable),
            "limits": {"max_error_rate": thresholds.max_error_rate if current.verdict else None, "p99_ms": limit,
                       "min_requests": thresholds.min_requests if current.verdict else None}}
