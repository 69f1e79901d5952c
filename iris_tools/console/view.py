"""What the console shows, read through the rollout's own code: the service and its revisions from the Admin API,
per-revision figures from timeSeries.list, the rollout's lock (an annotation) and records, the latest shadow.

Every read is plain data for JSON; nothing here writes. The actions (actions.py) go through the command-line
tools' functions, so the page and the commands refuse the same things with the same words.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from iris_tools.google.monitoring import Monitoring
from iris_tools.rollout.lock import HISTORY, ROLLED_BACK, barred, digest_of, lock_state, step_text
from iris_tools.rollout.gate import Thresholds
from iris_tools.rollout.service import Service, annotation, condition, image_of, model_of, shares, tags_of
from iris_tools.rollout.settings import PAUSE, percent_at

RECORDS_SHOWN = 8  # the last rollouts listed


def revision_row(service: dict[str, Any], revision: dict[str, Any], split: dict[str, int],
                 tags: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    name = revision["metadata"]["name"]
    ready = condition(revision)
    entry = barred(service, revision)
    return {"name": name, "model": model_of(image_of(revision) or ""), "image": image_of(revision),
            "digest": digest_of(revision), "created": revision["metadata"].get("creationTimestamp"),
            "ready": ready.get("status", "Unknown"), "reason": ready.get("reason"), "message": ready.get("message"),
            "percent": split.get(name, 0), "tags": tags.get(name, []),
            "barred": None if entry is None else {"at": entry.get("at"), "reason": entry.get("reason")}}


def split_rows(service: dict[str, Any], models: dict[str, str | None],
               tags: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """The traffic as the service reports it: one row per revision with a share, largest first, tags named."""
    return [{"revision": name, "model": models.get(name), "percent": percent, "tags": tags.get(name, [])}
            for name, percent in sorted(shares(service).items(), key=lambda item: (-item[1], item[0]))]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


class View:
    """The page's data for one target (local or cloudrun), any of its services."""

    def __init__(self, service: Service, monitoring: Monitoring, run_dir: Path, period_s: float) -> None:
        self.service = service
        self.monitoring = monitoring
        self.run_dir = run_dir
        self.period_s = period_s

    def for_service(self, name: str | None) -> Service:
        """The Service for `name` (the configured one when None), sharing the API client."""
        if not name or name == self.service.name:
            return self.service
        return Service(self.service.gcloud, replace(self.service.settings, service=name), api=self.service.api)

    def services(self) -> list[str]:
        listing = self.service.api.call("GET", self.service.path.rsplit("/", 1)[0])
        names = sorted(item["metadata"]["name"] for item in listing.get("items", []))
        return names or [self.service.name]

    def state(self, name: str | None) -> dict[str, Any]:
        target = self.for_service(name)
        service = target.describe()
        revisions = target.revisions()
        split = shares(service)
        tags = tags_of(service)
        rows = [revision_row(service, revision, split, tags) for revision in revisions]
        models = {row["name"]: row["model"] for row in rows}
        ready = condition(service)
        lock, live = lock_state(service, target.settings)
        return {
            "target": target.gcloud.target, "service": target.name, "url": service["status"].get("url"),
            "services": self.services(), "now": time.time(),
            "ready": {"status": ready.get("status", "Unknown"), "reason": ready.get("reason"),
                      "message": ready.get("message")},
            "split": split_rows(service, models, tags), "revisions": rows,
            "history": annotation(service, HISTORY, []), "rolled_back": annotation(service, ROLLED_BACK, [])[::-1],
            "rollout": self._rollout(target, lock, live),
            "records": self._records(target.name), "shadow": self._shadow(target.name),
            "report": (self.run_dir / "report" / "compare.png").is_file(),
        }

    def _rollout(self, target: Service, lock: dict[str, Any] | None, live: bool) -> dict[str, Any] | None:
        """The rollout holding the service (its lock), with this machine's record of it when there is one:
        the steps, the one reached, and the live verdict of the step under way."""
        if not lock:
            return None
        steps = lock.get("steps") if isinstance(lock.get("steps"), list) else []  # an annotation anyone may edit
        index = lock.get("step") if isinstance(lock.get("step"), int) else -1
        record = _read_json(self.run_dir / "rollout" / "latest.json")
        if not record or record.get("id") != lock.get("id") or record.get("decision"):  # another rollout's
            record = None
        current = (record or {}).get("current")
        if current and current.get("step") != index:
            current = None
        state = "paused" if lock.get("paused") else ("running" if live else "interrupted")
        return {"candidate": lock.get("candidate"), "stable": lock.get("stable"), "state": state, "live": live,
                "steps": [{"step": i, "percent": percent_at(steps, i), "pause": step == PAUSE,
                           "verdict": _step_verdict(record, i)} for i, step in enumerate(steps)],
                "index": index, "text": step_text(lock), "host": lock.get("host"), "pid": lock.get("pid"),
                "started": lock.get("started"), "updated": lock.get("updated"), "promoted": lock.get("promoted"),
                "current": _current(current), "thresholds": (record or {}).get("thresholds")}

    def _records(self, service: str) -> list[dict[str, Any]]:
        """This machine's last RECORDS_SHOWN rollout records of `service`, newest first."""
        paths = sorted((self.run_dir / "rollout").glob(f"{service}-*.json"), reverse=True)  # named by start time
        found: list[dict[str, Any]] = []
        for path in paths:
            record = _read_json(path)
            if record is None or record.get("service") != service:  # iris-canary-... is not iris's
                continue
            if len(found) == RECORDS_SHOWN:
                break
            found.append({"file": path.name, "candidate": record.get("candidate"), "stable": record.get("stable"),
                          "decision": record.get("decision") or "running or interrupted",
                          "started": record.get("started"), "ended": record.get("ended"),
                          "reason": record.get("reason") or "; ".join((record.get("verdict") or {}).get("reasons", [])),
                          "steps": [{"percent": s.get("percent"), "verdict": s.get("verdict")}
                                    for s in record.get("steps", [])]})
        return found

    def _shadow(self, service: str) -> dict[str, Any] | None:
        report = _read_json(self.run_dir / "report" / "shadow.json")
        if not report or report.get("service") != service:
            return None
        keys = ("stable", "candidate", "n", "agreement", "agreement_ci95", "failed_requests", "replayed", "classes",
                "confusion", "class_shift", "latency")
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


def _step_verdict(record: dict[str, Any] | None, index: int) -> str | None:
    """What this machine's record says step `index` ended with (promote, rollback, ...), if it has ended."""
    return next((s.get("verdict") for s in (record or {}).get("steps", []) if s.get("index") == index), None)


def _current(current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The step under way: when it started, when its window and its hold end, its live verdict and the limits the
    candidate's figures are held to."""
    if not current:
        return None
    verdict = current.get("verdict") or {}
    thresholds = verdict.get("thresholds") or {}
    stable = verdict.get("stable") or {}
    p99 = stable.get("p99_ms")
    limit = Thresholds(**thresholds).latency_limit(p99) if p99 is not None and thresholds else None
    return {**{key: current.get(key) for key in ("step", "percent", "started", "window_end", "hold_end", "at",
                                                 "paused")},
            "decision": verdict.get("decision"), "reasons": verdict.get("reasons", []),
            "candidate": verdict.get("candidate"), "stable": stable, "limits": {
                "max_error_rate": thresholds.get("max_error_rate"), "p99_ms": limit,
                "min_requests": thresholds.get("min_requests")}}

