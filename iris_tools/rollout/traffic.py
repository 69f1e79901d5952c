"""`make traffic`: the service's split, tags and live figures per revision; SPLIT= sets a split by model or revision."""

from __future__ import annotations

import time
from typing import Any, TextIO

from iris_tools.google.monitoring import Figures, Monitoring
from iris_tools.rollout.cloud_run import CloudRunService, image_of, model_of, name_of, tags_of
from iris_tools.cli.tables import table
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.lock import held
from iris_tools.rollout.printing import ms, rate
from iris_tools.rollout.records import Annotations
from iris_tools.rollout.rollback import check_not_barred
from iris_tools.rollout.split import Split


def set_split(target: CloudRunService, text: str) -> Split:
    """SPLIT="svc=90 lin_svc=10" (models or revisions), set in one write with what it means for the rollout's
    annotations: an interrupted rollout's lock is released, and a revision given 100% joins the history."""
    revisions = target.revisions()
    split = Split.parse(text, lambda name: target.revision_for(name, revisions))
    service = target.describe()
    annotations = Annotations.of(service)
    lock, live = held(annotations, target)
    if lock and live:
        raise RolloutError(f"a rollout of {lock.candidate} is running: it owns the traffic until it ends "
                           f"(`make rollback` aborts it)")
    by_name = {name_of(r): r for r in revisions}
    for revision in split.revisions():
        check_not_barred(annotations, by_name[revision], target.settings.force)
    winner = split.whole()
    history = annotations.with_history(winner) if winner else None
    target.write(service, split=split, lock=None if (lock or annotations.lock_error) else False,
                 history=history if history != annotations.history else None)
    return split


def show(target: CloudRunService, monitoring: Monitoring, out: TextIO) -> None:
    settings = target.settings
    service = target.describe()
    revisions = {name_of(r): r for r in target.revisions()}
    now = time.time()
    window = max(60.0, settings.step_seconds)
    figures = monitoring.figures(settings.service, now - window - settings.delay_seconds, now - settings.delay_seconds)
    print(f"service {settings.service} on {target.gcloud.target}: {service['status']['url']}", file=out)
    print(f"figures over {window:g} s" + (f", {settings.delay_seconds:g} s behind (monitoring delay)"
                                          if settings.delay_seconds else ""), file=out)
    rows = [["revision", "model", "traffic", "tags", "requests", "5xx", "p50", "p99"]]
    split = Split.of(service)
    tags = {name: [f"{t['tag']} {t['url']}".strip() for t in named] for name, named in tags_of(service).items()}
    for name, revision in sorted(revisions.items(), key=lambda item: _created(item[1]), reverse=True):
        f = figures.get(name, Figures())
        rows.append([name, model_of(image_of(revision) or "") or "?", f"{split.percent(name)}%",
                     ", ".join(tags.get(name, [])) or "-", str(f.requests), rate(f), ms(f.p50_ms), ms(f.p99_ms)])
    print(table(rows, indent="  "), file=out)
    annotations = Annotations.of(service)
    lock, live = held(annotations, target)
    if annotations.lock_error:
        print(f"\n{annotations.lock_error}; `make rollback` undoes the rollout it records", file=out)
    elif lock and live and lock.paused:
        print(f"\na rollout of {lock.candidate} from {lock.stable} is waiting at a pause: step {lock.step_text()} "
              f"({lock.who()})", file=out)
    elif lock and live:
        print(f"\na rollout of {lock.candidate} from {lock.stable} is running: step {lock.step_text()} "
              f"({lock.who()})", file=out)
    elif lock:
        print(f"\nan interrupted rollout of {lock.candidate} from {lock.stable} stopped at step {lock.step_text()}; "
              f"traffic is as that step set it ({split}). `make rollout` resumes it; `make rollback` returns 100% "
              f"to {lock.stable}.", file=out)
    for entry in annotations.rolled_back:
        bar = "" if entry.barred else " (not barred: too few requests to judge)"
        print(f"rolled back: {entry.revision} ({entry.image}) at {entry.at}: {entry.reason}{bar}", file=out)


def _created(revision: dict[str, Any]) -> str:
    return revision["metadata"].get("creationTimestamp", "")
