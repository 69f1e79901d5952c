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
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from iris_tools.google.api import ApiError
from iris_tools.google.gcloud import GcloudError
from iris_tools.google.monitoring import Figures, IncompleteFigures, Monitoring
from iris_tools.rollout.errors import EXIT_FAILED, EXIT_ROLLED_BACK, RolloutError
from iris_tools.rollout.gate import Verdict, judge
from iris_tools.rollout.invoke import ask
from iris_tools.rollout.lock import (
    HISTORY,
    LOCK,
    ROLLED_BACK,
    acquire,
    appended,
    digest_of,
    lock_state,
    now_text,
    step_text,
)
from iris_tools.rollout.printing import live_line, summary
from iris_tools.rollout.rollback import check_not_barred
from iris_tools.rollout.service import Conflict, Service, annotation, image_of, ready, shares, split_text
from iris_tools.rollout.settings import PAUSE, percent_at, percents_of
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
    index: int = -1  # its place in the plan (a resumed rollout's record starts part way)


class Stopped(RolloutError):
    """Someone else acted on the service mid-rollout (`make rollback`, a traffic change): stop, touch nothing."""

    def __init__(self, message: str, aborted: bool = False) -> None:
        super().__init__(message)
        self.aborted = aborted


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
        steps = resume.get("steps") if resume else settings.steps
        if resume and not (isinstance(steps, list) and steps and all(type(p) is int or p == PAUSE for p in steps)
                           and isinstance(resume.get("step"), int) and -1 <= resume["step"] < len(steps)):
            raise RolloutError(f"the interrupted rollout's record does not fit (steps {steps!r}, step "
                               f"{resume.get('step')!r}): nothing was changed; `make rollback` undoes it")
        # 1 - CONFIDENCE is shared over the steps this rollout walks (a resumed one's own, not STEPS now)
        settings.thresholds = replace(settings.thresholds, steps=len(percents_of(steps)))
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
        check_not_barred(service, revisions[revision], settings.force)
        if settings.min_agreement is not None and not resume:
            report = Shadow(self.service, self.out).run(None, revision,
                                                        self.report_dir.parent / "report" / "shadow.json")
            low = report["agreement_ci95"][0]
            if low < settings.min_agreement:  # judged on what the sample can vouch for, not its point estimate
                print(f"\nNOT ROLLED OUT: {revision} agrees with {stable} on {100 * report['agreement']:.1f}% of "
                      f"{report['n']} recent inputs, at least {100 * low:.1f}% at 95% confidence (Wilson), below "
                      f"MIN_AGREEMENT {100 * settings.min_agreement:g}%; no traffic moved.", file=self.out, flush=True)
                return EXIT_ROLLED_BACK
        lock = acquire(self.service, revision, stable, {**(resume or {}), "image": image_of(revisions[revision]),
                                                         "digest": digest_of(revisions[revision])}, steps)
        self.record = {"id": lock["id"], "service": settings.service, "target": self.service.gcloud.target,
                       "candidate": revision,
                       "stable": stable, "plan": steps, "thresholds": asdict(settings.thresholds),
                       "steps": [], "samples": [], "decision": None, "started": time.time(),
                       "path": str(self.report_dir / f"{settings.service}-{time.strftime('%Y%m%d-%H%M%S')}.json")}
        self._save()
        try:
            if not resume:
                self.warm_up(revision)
            return self._walk(lock)
        except Stopped as stop:  # someone else acted: traffic is theirs now, and is not touched again
            self.record.update(decision="aborted" if stop.aborted else "stopped", reason=str(stop))
            self._save()
            print(f"\n{'ABORTED' if stop.aborted else 'STOPPED'}: {stop}", file=self.out, flush=True)
            return EXIT_FAILED
        except Exception as exc:  # gcloud, the APIs, a bug: users go back to the stable revision
            return self._fail_safe(lock, exc)

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
        candidate, stable, steps = lock["candidate"], lock["stable"], lock["steps"]
        previous_stable = Figures()
        start_index = max(0, lock.get("step", -1))
        print(f"rolling out {candidate} (stable {stable}) in steps "
              f"{' '.join(p if p == PAUSE else f'{p}%' for p in steps)}; "
              f"{settings.step_seconds:g} s of judged time and {settings.thresholds.min_requests} candidate "
              f"requests per step", file=self.out, flush=True)
        share = percent_at(steps, start_index) if lock.get("step", -1) >= 0 else 0
        expected = {stable: 100 - share, candidate: share}
        for index in range(start_index, len(steps)):
            if steps[index] == PAUSE:
                self._pause(lock, index, expected)
                continue
            percent = steps[index]
            service = self._still_ours(lock, expected)
            expected = {stable: 100 - percent, candidate: percent}
            lock.update(step=index, updated=time.time())
            try:  # the split and the step, in one write, with the version just read
                self.service.annotate({LOCK: lock}, service, split=expected)
            except Conflict as exc:
                raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
            step = Step(percent, time.time(), index=index)
            self.record.update(at_step=index, at_percent=percent)
            self._save()  # a rollout killed in this step leaves a record that says so
            verdict = self._watch(step, index, lock, expected, previous_stable)
            step.ended = time.time()
            step.verdict, step.reasons = verdict.decision, verdict.reasons
            step.candidate, step.stable = verdict.candidate, verdict.stable
            self.record["steps"].append(asdict(step))
            self._save()
            print(f"step {index + 1}/{len(steps)} at {percent}%: {verdict.line()}", file=self.out, flush=True)
            if verdict.decision != "promote":
                return self._roll_back(lock, verdict)
            if step.stable.requests:
                previous_stable = step.stable
        service = self._still_ours(lock, expected)
        history = annotation(service, HISTORY, [])
        try:
            self.service.annotate({LOCK: None, HISTORY: appended(history, candidate)}, service)
        except Conflict as exc:
            raise Stopped(f"{exc}; the rollout had reached 100% and stops without changing traffic") from None
        self.record["decision"] = "promoted"
        self._save()
        print(summary(self.record), file=self.out)
        print(f"\n{candidate} serves 100% of service {settings.service}. `make rollback` returns to {stable}.",
              file=self.out, flush=True)
        return 0

    def _pause(self, lock: dict[str, Any], index: int, expected: dict[str, int]) -> None:
        """Hold the split until a person runs `make promote` (which marks the lock) or `make rollback` (which
        aborts), as Argo Rollouts' `pause: {}`; the lock says it is waiting, so `make traffic` does too."""
        service = self._still_ours(lock, expected)
        if not (lock.get("step") == index and lock.get("paused")):
            lock.update(step=index, paused=True, updated=time.time())
            try:
                service = self.service.annotate({LOCK: lock}, service)
            except Conflict as exc:
                raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
        share = expected.get(lock["candidate"], 0)
        print(f"step {index + 1}/{len(lock['steps'])}: paused at {share}% until `make promote` "
              f"(or `make rollback`)", file=self.out, flush=True)
        started = time.time()
        self.record["current"] = {"step": index, "percent": share, "started": started, "paused": True}
        self._save()
        while True:
            held = annotation(service, LOCK, None) or {}
            if held.get("promoted"):
                lock.update(paused=False, promoted=False, updated=time.time())
                try:
                    self.service.annotate({LOCK: lock}, service)
                except Conflict as exc:
                    raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
                self.record["steps"].append(asdict(Step(share, started, time.time(), verdict="promote",
                                                        reasons=[f"promoted by {held['promoted']}"], index=index)))
                self._save()
                print(f"step {index + 1}/{len(lock['steps'])}: promoted by {held['promoted']}", file=self.out,
                      flush=True)
                return
            time.sleep(self.settings.poll_seconds)
            service = self._still_ours(lock, expected)

    def _still_ours(self, lock: dict[str, Any], expected: dict[str, int]) -> dict[str, Any]:
        """The service, read now, if this rollout still holds it: its lock is this one and the split is the one it
        set. Otherwise Stopped: `make rollback` aborted it, or someone else changed the traffic."""
        service = self.service.describe()
        held = annotation(service, LOCK, None)
        found = shares(service)
        wanted = {name: share for name, share in expected.items() if share}
        if not held or held.get("id") != lock["id"]:
            if found == {lock["stable"]: 100}:
                raise Stopped(f"the rollout was aborted (`make rollback`): 100% is on {lock['stable']}; the "
                              f"rollout stops and does not touch traffic again", aborted=True)
            raise Stopped(f"the rollout's record on service {self.settings.service} was removed or replaced by "
                          f"someone else (traffic now: {split_text(found)}); the rollout stops and changes nothing")
        if found != wanted:
            raise Stopped(f"the traffic of service {self.settings.service} was changed by someone else during the "
                          f"rollout: it is {split_text(found)}, the rollout had set {split_text(wanted)}; the rollout "
                          f"stops here and changes nothing (`make traffic` shows it, `make rollback` undoes the "
                          f"rollout)")
        return service

    def _watch(self, step: Step, index: int, lock: dict[str, Any], expected: dict[str, int],
               previous_stable: Figures) -> Verdict:
        """Wait out the step; judge as figures arrive. The judged window is [the step's start + the figures'
        resolution, now - the monitoring delay]: nothing from before the step (the warm-up, a shadow replay,
        the step before) is counted, and the step lasts until it has STEP_SECONDS of judged time. Each poll also checks the
        rollout still holds the service. At 100% the stable revision serves nothing: the candidate is judged
        against the stable figures of the step before."""
        settings = self.settings
        candidate, stable = lock["candidate"], lock["stable"]
        live = self.out.isatty() if hasattr(self.out, "isatty") else False
        judged_start = step.started + settings.resolution_seconds
        window_end = judged_start + settings.delay_seconds + settings.step_seconds
        hold_end = window_end + settings.max_hold_seconds
        while True:
            time.sleep(settings.poll_seconds)
            self._still_ours(lock, expected)
            now = time.time()
            judged_end = max(judged_start, now - settings.delay_seconds)
            try:
                figures = (self.monitoring.figures(settings.service, judged_start, judged_end)
                           if judged_end > judged_start else {})
            except IncompleteFigures as exc:  # partial figures: hold, never judge (let alone promote) on them
                print(f"step {index + 1}/{len(lock['steps'])} {step.percent}%: figures incomplete ({exc}); holding",
                      file=self.out, flush=True)
                if now < hold_end:
                    continue
                verdict = Verdict("rollback", [f"figures still incomplete after holding {settings.max_hold_seconds:g} "
                                               f"s (MAX_HOLD_SECONDS): {exc}"], thresholds=settings.thresholds)
                verdict.insufficient = True
                return verdict
            mine, theirs = figures.get(candidate, Figures()), figures.get(stable, Figures())
            reference = theirs if theirs.requests else previous_stable
            self.record["samples"].append({"at": now, "percent": step.percent, "window": [judged_start, judged_end],
                                           "candidate": asdict(mine), "stable": asdict(theirs)})
            text = live_line(index, len(lock["steps"]), step.percent, max(0.0, window_end - now), mine, theirs)
            if live:
                print("\r" + text.ljust(118), end="", file=self.out, flush=True)
            else:
                print(text, file=self.out, flush=True)
            verdict = judge(mine, reference, settings.thresholds, candidate_ready=True)
            self.record["current"] = {"step": index, "percent": step.percent, "started": step.started,
                                      "window_end": window_end, "hold_end": hold_end, "at": now,
                                      "verdict": verdict.as_json()}
            self._save()  # each poll: what a watcher (the console) reads as the step's live figures
            if now < window_end and mine.requests < settings.thresholds.min_requests:
                continue
            if verdict.decision == "rollback" or (verdict.decision == "promote" and now >= window_end):
                if live:
                    print(file=self.out)
                return judge(mine, reference, settings.thresholds,
                             candidate_ready=self.service.revision_ready(candidate))
            if verdict.decision == "hold" and now >= hold_end:
                if live:
                    print(file=self.out)
                verdict.decision = "rollback"
                verdict.insufficient = True
                verdict.reasons.append(f"still not judged after holding {settings.max_hold_seconds:g} s "
                                       f"(MAX_HOLD_SECONDS)")
                return verdict

    def _roll_back(self, lock: dict[str, Any], verdict: Verdict) -> int:
        candidate, stable = lock["candidate"], lock["stable"]
        entry = {"revision": candidate, "image": lock.get("image"), "digest": lock.get("digest"),
                 "reason": "; ".join(verdict.reasons), "barred": not verdict.insufficient, "at": now_text()}
        self._restore(lock, entry)
        self.record["decision"] = "rolled back"
        self.record["verdict"] = verdict.as_json()
        self._save()
        print(summary(self.record), file=self.out)
        print(f"\nROLLED BACK: 100% is on {stable} again. {candidate}: {entry['reason']}. Thresholds: 5xx rate "
              f"<= {100 * verdict.thresholds.max_error_rate:g}%, p99 <= {verdict.thresholds.max_latency_ratio:g}x "
              f"the stable p99 (or + {verdict.thresholds.min_latency_delta_ms:g} ms), breaches called at "
              f"{100 * verdict.thresholds.confidence:g}% confidence, at least {verdict.thresholds.min_requests} "
              f"requests per step." + ("" if entry["barred"] else " It is not barred: it was not judged, only "
                                             "short of requests; `make rollout` may try it again."),
              file=self.out, flush=True)
        return EXIT_ROLLED_BACK

    def _restore(self, lock: dict[str, Any], entry: dict[str, Any]) -> None:
        """100% on the stable revision, the lock removed and the candidate recorded, in one write; re-read and
        made again when it loses a race (never over someone else's change: if the lock is no longer ours,
        whoever took it decides)."""
        for _ in range(5):
            service = self.service.describe()
            held = annotation(service, LOCK, None)
            if held and held.get("id") != lock["id"]:
                raise Stopped("another rollout holds the service now; this one stops without touching traffic")
            rolled_back = annotation(service, ROLLED_BACK, [])
            try:
                self.service.annotate({LOCK: None, ROLLED_BACK: appended(rolled_back, entry)}, service,
                                      split={lock["stable"]: 100})
                return
            except Conflict:
                continue
        raise RolloutError(f"could not write 100% to {lock['stable']}: the service kept changing")

    def _fail_safe(self, lock: dict[str, Any], error: BaseException) -> int:
        """Anything that went wrong mid-rollout: users back on the stable revision, the record saying why,
        a non-zero exit. If even that write fails, the message says what to run."""
        what = f"{type(error).__name__}: {error}"
        print(f"\nFAILED: {what}", file=self.out, flush=True)
        if not isinstance(error, (RolloutError, GcloudError, ApiError)):
            traceback.print_exc(file=self.out)
        self.record.update(decision="failed", reason=what)
        entry = {"revision": lock["candidate"], "image": lock.get("image"), "digest": lock.get("digest"),
                 "reason": f"the rollout failed: {what}", "barred": False, "at": now_text()}
        try:
            self._restore(lock, entry)
            self.record["traffic"] = f"100% on {lock['stable']}"
            print(f"100% is on {lock['stable']} again; the candidate is not barred (it was not judged).",
                  file=self.out, flush=True)
        except Exception as restore_error:  # noqa: BLE001 - the last line of defence: say what to do
            self.record["traffic"] = f"NOT RESTORED: {type(restore_error).__name__}: {restore_error}"
            print(f"COULD NOT RESTORE TRAFFIC ({restore_error}). Run: gcloud run services update-traffic "
                  f"{self.settings.service} --to-revisions {lock['stable']}=100", file=self.out, flush=True)
        self._save()
        return EXIT_FAILED

    def _save(self) -> None:
        """The record, atomically, after every step and decision: a rollout killed at any point leaves one that
        says where it was."""
        self.record["updated"] = time.time()
        if self.record.get("decision"):
            self.record["ended"] = self.record["updated"]
        text = json.dumps(self.record, indent=1)
        write_atomically(Path(self.record["path"]), text)
        write_atomically(self.report_dir / "latest.json", text)
        if self.record.get("decision"):
            print(f"figures of every step: {self.record['path']}", file=self.out)
