"""A gradual migration from the stable revision to a candidate, gated on live figures, step by step.

Every change is a gcloud command and every figure comes from the Cloud Monitoring API, so the same
code runs against Cloud Run (TARGET=cloudrun) and the local Cloud Run (TARGET=local). Each step's
split and lock record go out in one whole write, after a check that the split is still the one the
rollout set; so a crash at any moment leaves a split the rollout had set, never a half-applied one,
and `make traffic` explains where it stopped.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from iris_tools.google.gcloud import GcloudError
from iris_tools.google.monitoring import Figures, Monitoring
from iris_tools.rollout.errors import EXIT_ROLLED_BACK, RolloutError
from iris_tools.rollout.gate import Verdict, judge
from iris_tools.rollout.invoke import ask
from iris_tools.rollout.lock import HISTORY, LOCK, ROLLED_BACK, acquire, appended, lock_state, now_text, step_text
from iris_tools.rollout.printing import live_line, summary
from iris_tools.rollout.service import Service, annotation, image_of, ready, shares, split_text
from iris_tools.rollout.shadow import Shadow
from iris_tools.state import write_atomically

WARMUP_INPUT = [5.8, 3.4]  # the tutorial's test point


@dataclass
class Step:
    percent: int
    started: float
    ended: float | None = None
    candidate: Figures = field(default_factory=Figures)
    stable: Figures = field(default_factory=Figures)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)


class Rollout:
    """One rollout of one service: checks, the lock, warm-up, the steps, and the rollback on a breach."""

    def __init__(self, service: Service, monitoring: Monitoring, report_dir: Path, out: TextIO) -> None:
        self.service = service
        self.settings = service.settings
        self.monitoring = monitoring
        self.report_dir = report_dir
        self.out = out

    def run(self, model: str | None, revision: str | None) -> int:
        settings = self.settings
        service = self.service.describe()
        lock, live = lock_state(service, settings)
        if lock and live:
            raise RolloutError(f"a rollout of {lock['candidate']} (from {lock['stable']}) is running on service "
                               f"{settings.service} (pid {lock['pid']} on {lock['host']}, at step "
                               f"{step_text(lock)}); wait for it, or stop it and `make rollback`")
        rolled_back = annotation(service, ROLLED_BACK, [])
        image = f"{settings.image}:{model}" if model else None
        resume = None
        if lock:  # interrupted: resume it, when this asks for the same candidate (or names none)
            same = (revision in (None, lock["candidate"])) and (model is None or image == lock.get("image"))
            if not same:
                raise RolloutError(f"an interrupted rollout of {lock['candidate']} is recorded at step "
                                   f"{step_text(lock)}: resume it with `make rollout` (no MODEL or REVISION), "
                                   f"or undo it with `make rollback`")
            resume, revision, model = lock, lock["candidate"], None
            print(f"resuming the interrupted rollout of {revision} at step {step_text(lock)}", file=self.out)
        for entry in rolled_back:
            if not settings.force and (entry.get("revision") == revision or (image and entry.get("image") == image)):
                raise RolloutError(f"{entry.get('revision')} ({entry.get('image')}) was rolled back at "
                                   f"{entry.get('at')}: {entry.get('reason')}; roll it out again with FORCE=1")
        split = shares(service)
        stable = resume["stable"] if resume else max(split, key=split.get)
        if not resume and split.get(stable) != 100:
            raise RolloutError(f"traffic is split ({split_text(split)}): a rollout starts from one revision "
                               f"at 100%; settle it first with `make traffic SPLIT=...` or `make rollback`")
        if model:
            revision = self.service.deploy(model, image, self.out)
        elif revision is None:
            raise RolloutError("name the candidate: MODEL=<name> (deploys iris:<name>) or REVISION=<revision>")
        revisions = {r["metadata"]["name"]: r for r in self.service.revisions()}
        if revision not in revisions:
            raise RolloutError(f"revision {revision} does not exist in service {settings.service}")
        if revision == stable:
            raise RolloutError(f"{revision} already serves 100% of service {settings.service}")
        if not ready(revisions[revision]):
            raise RolloutError(f"candidate {revision} is not ready and gets no traffic")
        if settings.min_agreement is not None and not resume:
            report = Shadow(self.service, self.out).run(None, revision,
                                                        self.report_dir.parent / "report" / "shadow.json")
            if report["agreement"] < settings.min_agreement:
                print(f"\nNOT ROLLED OUT: {revision} agrees with {stable} on {100 * report['agreement']:.1f}% of "
                      f"{report['n']} recent inputs, below MIN_AGREEMENT {100 * settings.min_agreement:g}%; "
                      f"no traffic moved.", file=self.out, flush=True)
                return EXIT_ROLLED_BACK
        lock = acquire(self.service, revision, stable, {**(resume or {}), "image": image_of(revisions[revision])})
        self.warm_up(revision)
        return self._walk(lock)

    def warm_up(self, revision: str) -> None:
        """WARMUP_REQUESTS predictions at the candidate's tag URL, four at a time, before users reach it:
        its first users do not pay its cold start (first connections, first calls), and the gate does not
        judge a cold start as a fault. Users never see these answers; they fall before the first window."""
        count = self.settings.warmup_requests
        if count <= 0:
            return
        url = next((t["url"] for t in self.service.describe()["status"].get("traffic", [])
                    if t.get("revisionName") == revision and t.get("url")), None)
        if url is None:
            print(f"{revision} has no tag URL: not warmed up (tag it to warm it up)", file=self.out, flush=True)
            return
        try:
            token = self.service.gcloud.identity_token() or None
        except GcloudError as exc:
            print(f"{revision} not warmed up: no identity token to call it with ({exc})", file=self.out, flush=True)
            return
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: ask(url, WARMUP_INPUT, token), range(count)))
        failed = [error for *_, error in replies if error]
        slowest = max(round_trip for _, _, round_trip, _ in replies)
        print(f"warmed up {revision} with {count} requests at {url}: {count - len(failed)} answered, slowest "
              f"{slowest:.0f} ms" + (f"; {len(failed)} failed, the first: {failed[0]}" if failed else ""),
              file=self.out, flush=True)

    def _walk(self, lock: dict[str, Any]) -> int:
        settings = self.settings
        candidate, stable = lock["candidate"], lock["stable"]
        record: dict[str, Any] = {"service": settings.service, "target": self.service.gcloud.target,
                                  "candidate": candidate, "stable": stable, "thresholds": asdict(settings.thresholds),
                                  "steps": [], "samples": [], "decision": None, "started": time.time()}
        previous_stable = Figures()
        start_index = max(0, lock.get("step", -1))
        print(f"rolling out {candidate} (stable {stable}) in steps {' '.join(f'{p}%' for p in settings.steps)}; "
              f"{settings.step_seconds:g} s and {settings.thresholds.min_requests} candidate requests per step",
              file=self.out, flush=True)
        expected = ({stable: 100} if lock.get("step", -1) < 0 else
                    {stable: 100 - settings.steps[start_index], candidate: settings.steps[start_index]})
        for index in range(start_index, len(settings.steps)):
            percent = settings.steps[index]
            service = self.service.describe()
            found = shares(service)
            if found != {name: share for name, share in expected.items() if share}:
                raise RolloutError(f"the traffic of service {settings.service} was changed by someone else during "
                                   f"the rollout: it is {split_text(found)}, the rollout had set "
                                   f"{split_text(expected)}; the rollout stops here and changes nothing "
                                   f"(`make traffic` shows it, `make rollback` undoes the rollout)")
            expected = {stable: 100 - percent, candidate: percent}
            lock.update(step=index, updated=time.time())
            self.service.annotate({LOCK: lock}, service, split=expected)  # the split and the step, in one write
            step = Step(percent, time.time())
            verdict = self._watch(step, index, candidate, stable, previous_stable, record)
            step.ended = time.time()
            step.verdict, step.reasons = verdict.decision, verdict.reasons
            step.candidate, step.stable = verdict.candidate, verdict.stable
            record["steps"].append(asdict(step))
            print(f"step {index + 1}/{len(settings.steps)} at {percent}%: {verdict.line()}", file=self.out, flush=True)
            if verdict.decision != "promote":
                return self._roll_back(candidate, stable, verdict, record)
            if step.stable.requests:
                previous_stable = step.stable
        service = self.service.describe()
        history = annotation(service, HISTORY, [])
        self.service.annotate({LOCK: None, HISTORY: appended(history, candidate)}, service)
        record["decision"] = "promoted"
        self._save(record)
        print(summary(record), file=self.out)
        print(f"\n{candidate} serves 100% of service {settings.service}. `make rollback` returns to {stable}.",
              file=self.out, flush=True)
        return 0

    def _watch(self, step: Step, index: int, candidate: str, stable: str, previous_stable: Figures,
               record: dict[str, Any]) -> Verdict:
        """Wait out the step's window; judge as figures arrive. At 100% the stable revision serves nothing:
        the candidate is judged against the stable figures of the step before."""
        settings = self.settings
        live = self.out.isatty() if hasattr(self.out, "isatty") else False
        window_end = step.started + settings.step_seconds
        hold_end = window_end + settings.max_hold_seconds
        while True:
            time.sleep(settings.poll_seconds)
            now = time.time()
            figures = self.monitoring.figures(settings.service, step.started - settings.delay_seconds,
                                              now - settings.delay_seconds)
            mine, theirs = figures.get(candidate, Figures()), figures.get(stable, Figures())
            reference = theirs if theirs.requests else previous_stable
            record["samples"].append({"at": now, "percent": step.percent, "candidate": asdict(mine),
                                      "stable": asdict(theirs)})
            text = live_line(index, len(settings.steps), step.percent, max(0.0, window_end - now), mine, theirs)
            if live:
                print("\r" + text.ljust(118), end="", file=self.out, flush=True)
            else:
                print(text, file=self.out, flush=True)
            if now < window_end and mine.requests < settings.thresholds.min_requests:
                continue
            verdict = judge(mine, reference, settings.thresholds, candidate_ready=True)
            if verdict.decision == "rollback" or (verdict.decision == "promote" and now >= window_end):
                if live:
                    print(file=self.out)
                return judge(mine, reference, settings.thresholds,
                             candidate_ready=self.service.revision_ready(candidate))
            if verdict.decision == "hold" and now >= hold_end:
                if live:
                    print(file=self.out)
                verdict.decision = "rollback"
                verdict.reasons.append(f"still too few requests after holding {settings.max_hold_seconds:g} s "
                                       f"(MAX_HOLD_SECONDS)")
                return verdict

    def _roll_back(self, candidate: str, stable: str, verdict: Verdict, record: dict[str, Any]) -> int:
        self.service.set_traffic({stable: 100})
        service = self.service.describe()
        rolled_back = annotation(service, ROLLED_BACK, [])
        image = next((image_of(r) for r in self.service.revisions() if r["metadata"]["name"] == candidate), None)
        entry = {"revision": candidate, "image": image, "reason": "; ".join(verdict.reasons), "at": now_text()}
        self.service.annotate({LOCK: None, ROLLED_BACK: appended(rolled_back, entry)}, service)
        record["decision"] = "rolled back"
        record["verdict"] = verdict.as_json()
        self._save(record)
        print(summary(record), file=self.out)
        print(f"\nROLLED BACK: 100% is on {stable} again. {candidate}: {entry['reason']}. Thresholds: 5xx rate "
              f"<= {100 * verdict.thresholds.max_error_rate:g}%, p99 <= {verdict.thresholds.max_latency_ratio:g}x "
              f"the stable p99 (or + {verdict.thresholds.min_latency_delta_ms:g} ms), breaches called at "
              f"{100 * verdict.thresholds.confidence:g}% confidence, at least {verdict.thresholds.min_requests} "
              f"requests per step.", file=self.out, flush=True)
        return EXIT_ROLLED_BACK

    def _save(self, record: dict[str, Any]) -> None:
        record["ended"] = time.time()
        path = self.report_dir / f"{self.settings.service}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        write_atomically(path, json.dumps(record, indent=1))
        write_atomically(self.report_dir / "latest.json", json.dumps(record, indent=1))
        print(f"figures of every step: {path}", file=self.out)
