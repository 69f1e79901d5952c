"""`make traffic`: the service's split, tags and live figures per revision; SPLIT= sets a split by model or revision."""

from __future__ import annotations

import time
from typing import Any, TextIO

from iris_tools.google.monitoring import Figures, Monitoring
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import HISTORY, LOCK, ROLLED_BACK, appended, lock_state, step_text
from iris_tools.rollout.printing import ms, rate, table
from iris_tools.rollout.rollback import check_not_barred
from iris_tools.rollout.service import Service, annotation, image_of, model_of, shares, split_text, tags_of


def parse_split(text: str, target: Service, revisions: list[dict[str, Any]]) -> dict[str, int]:
    """SPLIT="svc=90 lin_svc=10" (models or revisions) -> revision -> percent, adding to 100."""
    split: dict[str, int] = {}
    for item in text.replace(",", " ").split():
        name, sep, percent = item.partition("=")
        if not sep or not percent.isdigit():
            raise RolloutError(f"SPLIT: {item!r} is not NAME=PERCENT (example: SPLIT=\"svc=90 lin_svc=10\")")
        revision = target.revision_for(name, revisions)
        split[revision] = split.get(revision, 0) + int(percent)
    if sum(split.values()) != 100:
        raise RolloutError(f"SPLIT: the shares add up to {sum(split.values())}, not 100")
    return split


def set_split(target: Service, monitoring: Monitoring, text: str, out: TextIO) -> int:
    revisions = target.revisions()
    split = parse_split(text, target, revisions)
    service = target.describe()
    lock, live = lock_state(service, target.settings)
    if lock and live:
        raise RolloutError(f"a rollout of {lock['candidate']} is running: it owns the traffic until it ends "
                           f"(`make rollback` aborts it)")
    by_name = {r["metadata"]["name"]: r for r in revisions}
    for revision, percent in split.items():
        if percent:
            check_not_barred(service, by_name[revision], target.settings.force)
    target.set_traffic(split)
    service = target.describe()
    changes: dict[str, Any] = {LOCK: None} if lock else {}
    history = annotation(service, HISTORY, [])
    winner = next((name for name, percent in split.items() if percent == 100), None)
    if winner and (not history or history[-1] != winner):
        changes[HISTORY] = appended(history, winner)
    if changes:
        target.annotate(changes, service)
    return show(target, monitoring, out)


def show(target: Service, monitoring: Monitoring, out: TextIO) -> int:
    settings = target.settings
    service = target.describe()
    revisions = {r["metadata"]["name"]: r for r in target.revisions()}
    now = time.time()
    window = max(60.0, settings.step_seconds)
    figures = monitoring.figures(settings.service, now - window - settings.delay_seconds, now - settings.delay_seconds)
    print(f"service {settings.service} on {target.gcloud.target}: {service['status']['url']}", file=out)
    print(f"figures over {window:g} s" + (f", {settings.delay_seconds:g} s behind (monitoring delay)"
                                          if settings.delay_seconds else ""), file=out)
    rows = [["revision", "model", "traffic", "tags", "requests", "5xx", "p50", "p99"]]
    split = shares(service)
    tags = {name: [f"{t['tag']} {t['url']}".strip() for t in named] for name, named in tags_of(service).items()}
    for name, revision in sorted(revisions.items(), key=lambda item: item[1]["metadata"].get("creationTimestamp", ""),
                                 reverse=True):
        f = figures.get(name, Figures())
        rows.append([name, model_of(image_of(revision) or "") or "?", f"{split.get(name, 0)}%",
                     ", ".join(tags.get(name, [])) or "-", str(f.requests), rate(f), ms(f.p50_ms), ms(f.p99_ms)])
    print(table(rows, indent="  "), file=out)
    lock, live = lock_state(service, settings)
    if lock and live and lock.get("paused"):
        print(f"\na rollout of {lock['candidate']} from {lock['stable']} is waiting at a pause: step "
              f"{step_text(lock)} (pid {lock['pid']} on {lock['host']})", file=out)
    elif lock and live:
        print(f"\na rollout of {lock['candidate']} from {lock['stable']} is running: step "
              f"{step_text(lock)} (pid {lock['pid']} on {lock['host']})", file=out)
    elif lock:
        print(f"\nan interrupted rollout of {lock['candidate']} from {lock['stable']} stopped at step "
              f"{step_text(lock)}; traffic is as that step set it ({split_text(split)}). "
              f"`make rollout` resumes it; `make rollback` returns 100% to {lock['stable']}.", file=out)
    for entry in annotation(service, ROLLED_BACK, []):
        bar = "" if entry.get("barred", True) else " (not barred: too few requests to judge)"
        print(f"rolled back: {entry.get('revision')} ({entry.get('image')}) at {entry.get('at')}: "
              f"{entry.get('reason')}{bar}", file=out)
    return 0
