"""A gradual migration from the stable revision to a candidate, gated on live figures, step by step.

Every figure comes from the Cloud Monitoring API and every change is one compare-and-swap write of the service
(CloudRunService.write), so the same code runs against Cloud Run (TARGET=cloudrun) and the local Cloud Run
(TARGET=local). Each step's split and lock go out in one write, after a check that the split is still the one the
rollout set; a crash at any moment leaves a split the rollout had set, never a half-applied one, and `make
traffic` explains where it stopped. The state machine emits events (events.py); it never prints.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from iris_tools.google.api import ApiError
from iris_tools.google.gcloud import GcloudError
from iris_tools.google.monitoring import Figures, IncompleteFigures, Monitoring
from iris_tools.rollout.cloud_run import (CloudRunService, Conflict, digest_of, image_of, name_of, ready, retrying,
                                          tag_urls)
from iris_tools.cli.failures import EXIT_FAILED, ToolError
from iris_tools.rollout.errors import EXIT_ROLLED_BACK, RolloutError
from iris_tools.rollout.events import (
    Decided,
    Emit,
    FiguresIncomplete,
    FiguresRead,
    PairedJudged,
    Said,
    Started,
    StepEnded,
    StepStarted,
)
from iris_tools.quality.outcomes import RevisionOutcome
from iris_tools.quality.sources import OutcomeReader
from iris_tools.rollout.gate import Verdict, judge
from iris_tools.rollout.quality_gate import QualityVerdict, judge_quality
from iris_tools.rollout.lock import acquire, held, new_lock, refuse_unreadable
from iris_tools.rollout.paired import PairedVerdict, paired_check
from iris_tools.rollout.records import Annotations, Lock, Plan, Record, RolledBack, StepResult, now_text
from iris_tools.rollout.rollback import check_not_barred
from iris_tools.rollout.shadow import Shadow
from iris_tools.rollout.split import Split
from iris_tools.rollout.rollback_window import keep_warm
from iris_tools.rollout.warmup import warm_up


PAUSE_FOR_LABELS = "pause"  # a step whose server checks passed and whose labels did not come: a person decides


class Stopped(RolloutError):
    """Someone else acted on the service mid-rollout (`make rollback`, a traffic change): stop, touch nothing."""

    def __init__(self, message: str, aborted: bool = False) -> None:
        super().__init__(message)
        self.aborted = aborted


@dataclass(frozen=True)
class Candidate:
    """What `run` settles before it takes the lock."""

    revision: str
    stable: str
    plan: Plan
    image: str | None
    digest: str | None
    resume: Lock | None


class Rollout:
    """One rollout of one service: checks, the lock, warm-up, the steps, and the rollback on a breach."""

    def __init__(self, service: CloudRunService, monitoring: Monitoring, report_dir: Path, emit: Emit,
                 outcomes: OutcomeReader | None = None) -> None:
        """`outcomes`: with LABELS, where the quality check reads the predictions and labels of a step's window."""
        self.service = service
        self.settings = service.settings
        self.monitoring = monitoring
        self.report_dir = report_dir
        self.emit = emit
        self.outcomes = outcomes
        self.thresholds = self.settings.thresholds

    def say(self, text: str) -> None:
        self.emit(Said(text))

    # ------------------------------------------------------------ before the lock

    def _resumable(self, annotations: Annotations, model: str | None, revision: str | None) -> Lock | None:
        """The interrupted rollout this one resumes (when it asks for the same candidate, or names none), or None.
        Refuses while another rollout runs, and when the recorded one does not parse."""
        settings = self.settings
        refuse_unreadable(annotations)
        lock, live = held(annotations, self.service)
        if lock is None:
            return None
        if live:
            raise RolloutError(f"a rollout of {lock.candidate} (from {lock.stable}) is running on service "
                               f"{settings.service} ({lock.who()}, at step {lock.step_text()}); wait for it, or "
                               f"stop it and `make rollback`")
        image = f"{settings.image}:{model}" if model else None
        if revision not in (None, lock.candidate) or (model is not None and image != lock.image):
            raise RolloutError(f"an interrupted rollout of {lock.candidate} is recorded at step {lock.step_text()}: "
                               f"resume it with `make rollout` (no MODEL or REVISION), or undo it with "
                               f"`make rollback`")
        if settings.plan_given and settings.plan != lock.plan:
            raise RolloutError(f"the interrupted rollout of {lock.candidate} follows its own plan, "
                               f"STEPS=\"{lock.plan.text().replace('%', '')}\" ({lock.who()}); STEPS=\""
                               f"{settings.plan.text().replace('%', '')}\" differs: resume it without STEPS, or "
                               f"`make rollback` and start again with these steps")
        self.say(f"resuming the interrupted rollout of {lock.candidate} at step {lock.step_text()}, with the plan "
                 f"it was started with: steps {lock.plan.text()} ({lock.who()}, started "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lock.started))})")
        return lock

    def _candidate(self, model: str | None, revision: str | None) -> Candidate:
        settings = self.settings
        service = self.service.describe()
        resume = self._resumable(Annotations.of(service), model, revision)
        if resume:
            revision, model = resume.candidate, None
        split = Split.of(service)
        stable = resume.stable if resume else split.largest()
        if not resume and (stable is None or split.whole() != stable):
            raise RolloutError(f"traffic is split ({split}): a rollout starts from one revision at 100%; settle it "
                               f"first with `make traffic SPLIT=...` or `make rollback`")
        if model:
            revision = self.service.deploy(model, f"{settings.image}:{model}", self.say)
        elif revision is None:
            raise RolloutError("name the candidate: MODEL=<name> (deploys iris:<name>) or REVISION=<revision>")
        revisions = {name_of(r): r for r in self.service.revisions()}
        if revision not in revisions:
            raise RolloutError(f"revision {revision} does not exist in service {settings.service}")
        if revision == stable:
            raise RolloutError(f"{revision} already serves 100% of service {settings.service}")
        if not ready(revisions[revision]):
            raise RolloutError(f"candidate {revision} is not ready and gets no traffic")
        check_not_barred(Annotations.of(service), revisions[revision], settings.force)
        return Candidate(revision, stable, resume.plan if resume else settings.plan, image_of(revisions[revision]),
                         digest_of(revisions[revision]), resume)

    def shadow_refuses_revision(self, revision: str) -> bool:
        """The shadow check of `revision` against the revision serving most traffic now (what `make rollout
        DETACH=1` runs before it starts the job, which has no gcloud to read logs with)."""
        stable = Split.of(self.service.describe()).largest() or "?"
        return self._shadow_refuses(Candidate(revision, stable, self.settings.plan, None, None, None))

    def _shadow_refuses(self, candidate: Candidate) -> bool:
        """With MIN_AGREEMENT, the candidate's agreement with the stable revision on recent inputs, judged on what
        the sample can vouch for (its Wilson lower bound), not its point estimate."""
        settings = self.settings
        if settings.min_agreement is None or candidate.resume:
            return False
        report = Shadow(self.service, self.say).run(None, candidate.revision,
                                                    self.report_dir.parent / "report" / "shadow.json")
        if report.get("task") == "regressor":
            self.say(f"\nNOT ROLLED OUT: MIN_AGREEMENT judges a classifier's answers, and {candidate.revision} is a "
                     f"regressor (its mean absolute difference from {candidate.stable} on {report['n']} recent inputs "
                     f"is {report['mean_absolute_difference']:.6g}); unset MIN_AGREEMENT to roll it out. No traffic moved.")
            return True
        low = report["agreement_ci95"][0]
        if low >= settings.min_agreement:
            return False
        self.say(f"\nNOT ROLLED OUT: {candidate.revision} agrees with {candidate.stable} on "
                 f"{100 * report['agreement']:.1f}% of {report['n']} recent inputs, at least {100 * low:.1f}% at 95% "
                 f"confidence (Wilson), below MIN_AGREEMENT {100 * settings.min_agreement:g}%; no traffic moved.")
        return True

    # ------------------------------------------------------------ the rollout

    def run(self, model: str | None, revision: str | None) -> int:
        candidate = self._candidate(model, revision)
        # 1 - CONFIDENCE is shared over the steps this rollout walks (a resumed one's own, not STEPS now), and with
        # the paired check at 0% when it comes first
        paired = self.outcomes is not None and self.settings.paired and not candidate.resume
        self.thresholds = replace(self.settings.thresholds, steps=len(candidate.plan.percents), paired=paired)
        if self._shadow_refuses(candidate):
            return EXIT_ROLLED_BACK
        lock = acquire(self.service, new_lock(candidate.revision, candidate.stable, candidate.plan, candidate.resume,
                                              candidate.image, candidate.digest), candidate.resume)
        settings = self.settings
        self.emit(Started(Record(
            id=lock.id, service=settings.service, target=self.service.gcloud.target, candidate=lock.candidate,
            stable=lock.stable, plan=lock.plan, thresholds=self.thresholds, started=time.time(),
            path=str(self.report_dir / f"{settings.service}-{time.strftime('%Y%m%d-%H%M%S')}.json")),
            resumed=candidate.resume is not None))
        try:
            if not candidate.resume:
                warm_up(self.service, lock.candidate, settings.warmup_requests, self.say)
            if self.thresholds.paired:
                judged = self._paired(lock)
                if judged.decision == "rollback":  # worse on what users asked: it never gets a user
                    return self._roll_back(lock, Verdict("rollback", [f"paired check at 0%: {r}" for r in
                                                                      judged.reasons], thresholds=self.thresholds))
            return self._walk(lock)
        except Stopped as stop:  # someone else acted: traffic is theirs now, and is not touched again
            if stop.aborted:
                self.emit(Decided("aborted", f"ABORTED: {stop}", reason=str(stop)))
                return EXIT_FAILED
            released = self._release(lock)
            reason = f"stopped by hand: {stop}" + ("; the rollout's lock is released, so the next `make rollout` "
                                                   "starts afresh" if released else "")
            self.emit(Decided("stopped", f"STOPPED: {reason}", reason=reason))
            return EXIT_FAILED
        except Exception as exc:  # gcloud, the APIs, a bug: users go back to the stable revision
            return self._fail_safe(lock, exc)

    def _paired(self, lock: Lock) -> PairedVerdict:
        """The candidate asked the stable revision's labelled inputs, judged on them (rollout/paired.py)."""
        url = tag_urls(self.service.describe()).get(lock.candidate)
        if url is None:
            verdict = PairedVerdict("skipped", "-", 0, [f"{lock.candidate} has no tag URL to replay to"])
        else:
            verdict = paired_check(self.outcomes, lock.stable, url, self.service.gcloud.identity_token() or None,
                                   self.settings, self.thresholds.alpha_paired, self.say)
        self.emit(PairedJudged(verdict.as_json()))
        return verdict

    def _walk(self, lock: Lock) -> int:
        settings = self.settings
        plan = lock.plan
        previous_stable, previous_outcome = Figures(), RevisionOutcome(lock.stable)
        self.say(f"rolling out {lock.candidate} (stable {lock.stable}) in steps {plan.text()}; "
                 f"{settings.step_seconds:g} s of judged time and {self.thresholds.min_requests} candidate requests "
                 f"per step")
        expected = Split.between(lock.stable, lock.candidate, lock.share)
        for index in range(max(0, lock.step), len(plan)):
            if plan[index].pause:
                lock = self._pause(lock, index, expected)
                continue
            percent = plan[index].percent
            service = self._still_ours(lock, expected)
            expected = Split.between(lock.stable, lock.candidate, percent)
            lock = lock.moved(step=index)
            try:  # the split and the step, in one write, with the version just read
                self.service.write(service, split=expected, lock=lock)
            except Conflict as exc:
                raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
            started = time.time()
            self.emit(StepStarted(index, plan, percent, started))
            verdict, stable_outcome = self._watch(lock, index, percent, started, expected, previous_stable,
                                                  previous_outcome)
            result = StepResult(percent, started, time.time(), verdict.candidate, verdict.stable, verdict.decision,
                                verdict.reasons, index, verdict.quality)
            self.emit(StepEnded(plan, result, verdict.line()))
            self._say_instances(lock, started)
            if verdict.decision == PAUSE_FOR_LABELS:  # too few labels for too long: a person decides
                lock = self._pause(lock, index, expected)
            elif verdict.decision != "promote":
                return self._roll_back(lock, verdict)
            if result.stable.requests:
                previous_stable = result.stable
            if stable_outcome.labelled:
                previous_outcome = stable_outcome
        return self._finish(lock, expected)

    def _say_instances(self, lock: Lock, started: float) -> None:
        """How many instances each revision runs, from Monitoring's instance_count (Cloud Run samples it once a
        minute: its newest point), and the cold starts of the step, from startup_latencies."""
        now = time.time()
        try:
            counts = self.monitoring.instances(self.settings.service, now)
            cold = self.monitoring.startups(self.settings.service, started, now)
        except ApiError as exc:
            self.say(f"  instances: not known ({exc})")
            return

        def text(role: str, revision: str) -> str:
            found = counts.get(revision)
            running = f"{sum(found.values())} ({found.get('active', 0)} active)" if found else "none reported"
            starts, mean_ms = cold.get(revision, (0, 0.0))
            return f"{role} {revision} {running}" + (f", {starts} started in the step (mean {mean_ms:.0f} ms)"
                                                      if starts else "")

        self.say("  instances: " + ", ".join(text(role, revision) for role, revision in
                                             (("candidate", lock.candidate), ("stable", lock.stable))))

    def _finish(self, lock: Lock, expected: Split) -> int:
        service = self._still_ours(lock, expected)
        try:
            self.service.write(service, lock=None, history=Annotations.of(service).with_history(lock.candidate))
        except Conflict as exc:
            raise Stopped(f"{exc}; the rollout had reached 100% and stops without changing traffic") from None
        self.emit(Decided("promoted", f"{lock.candidate} serves 100% of service {self.settings.service}. "
                                      f"`make rollback` returns to {lock.stable}."))
        keep_warm(self.service, lock.stable, self.settings.rollback_window_s, self.say)
        return 0

    def _pause(self, lock: Lock, index: int, expected: Split) -> Lock:
        """Hold the split until a person runs `make promote` (which marks the lock) or `make rollback` (which
        aborts), as Argo Rollouts' `pause: {}`; the lock says it is waiting, so `make traffic` does too. A percent
        step whose labels did not come is held the same way, at its share."""
        service = self._still_ours(lock, expected)
        if not (lock.step == index and lock.paused):
            lock = lock.moved(step=index, paused=True)
            try:
                service = self.service.write(service, lock=lock)
            except Conflict as exc:
                raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
        share = expected.percent(lock.candidate)
        started = time.time()
        self.emit(StepStarted(index, lock.plan, share, started, paused=True))
        while True:
            promoted = Annotations.of(service).lock
            if promoted is not None and promoted.promoted:
                lock = lock.moved(paused=False, promoted=None)
                try:
                    self.service.write(service, lock=lock)
                except Conflict as exc:
                    raise Stopped(f"{exc}; the rollout stops here and changes nothing") from None
                reason = f"promoted by {promoted.promoted}"
                self.emit(StepEnded(lock.plan, StepResult(share, started, time.time(), verdict="promote",
                                                          reasons=[reason], index=index), reason, judged=False))
                return lock
            time.sleep(self.settings.poll_seconds)
            service = self._still_ours(lock, expected)

    def _still_ours(self, lock: Lock, expected: Split) -> dict:
        """The service, read now, if this rollout still holds it: its lock is this one and the split is the one it
        set. Otherwise Stopped: `make rollback` aborted it, or someone else changed the traffic."""
        service = self.service.describe()
        annotations = Annotations.of(service)
        found = Split.of(service)
        if annotations.lock is None or annotations.lock.id != lock.id:
            if found == Split.all_on(lock.stable):
                raise Stopped(f"the rollout was aborted (`make rollback`): 100% is on {lock.stable}; the rollout "
                              f"stops and does not touch traffic again", aborted=True)
            raise Stopped(f"the rollout's record on service {self.settings.service} was removed or replaced by "
                          f"someone else (traffic now: {found}); the rollout stops and changes nothing")
        if found != expected:
            raise Stopped(f"the traffic of service {self.settings.service} was changed by someone else during the "
                          f"rollout: it is {found}, the rollout had set {expected}; the rollout stops here and "
                          f"changes nothing (`make traffic` shows it, `make rollback` undoes the rollout)")
        return service

    def _quality(self, lock: Lock, start: float, end: float,
                 previous: RevisionOutcome) -> tuple[QualityVerdict | None, RevisionOutcome]:
        """With LABELS: the candidate's answers against the stable revision's on the window's traffic (at 100% the
        stable revision serves nothing: its outcome of the step before); and the stable outcome."""
        if self.outcomes is None:
            return None, previous
        outcomes = self.outcomes.outcomes(start, end)
        found = outcomes.revisions
        mine = found.get(lock.candidate, RevisionOutcome(lock.candidate))
        theirs = found.get(lock.stable, RevisionOutcome(lock.stable))
        reference = theirs if theirs.labelled else previous
        verdict = judge_quality(mine, reference, self.settings.quality, self.thresholds.alpha_per_step,
                                same_window=reference is theirs)
        verdict.seen = {"predictions": sum(o.predictions for o in found.values()), "labels": outcomes.labels,
                        "unmatched": outcomes.unmatched, "conflicts": outcomes.conflicts}
        return verdict, theirs

    def _watch(self, lock: Lock, index: int, percent: int, started: float, expected: Split, previous_stable: Figures,
               previous_outcome: RevisionOutcome) -> tuple[Verdict, RevisionOutcome]:
        """Wait out the step; judge as figures arrive. The judged window is [the step's start + the figures'
        resolution, now - the monitoring delay]: nothing from before the step (the warm-up, a shadow replay, the
        step before) is counted, and the step lasts until it has STEP_SECONDS of judged time. Each poll also checks
        the rollout still holds the service. At 100% the stable revision serves nothing: the candidate, now carrying
        every user, is judged against the stable revision's figures over the whole rollout (from its start, when
        the stable revision carried every user), not against the step before's, taken under a lighter load."""
        settings, thresholds = self.settings, self.thresholds
        judged_start = started + settings.resolution_seconds
        window_end = judged_start + settings.delay_seconds + settings.step_seconds
        hold_end = window_end + settings.max_hold_seconds
        label_end = window_end + settings.label_wait_seconds
        stable_outcome = previous_outcome
        while True:
            time.sleep(settings.poll_seconds)
            self._still_ours(lock, expected)
            now = time.time()
            judged_end = max(judged_start, now - settings.delay_seconds)
            try:
                figures = (self.monitoring.figures(settings.service, judged_start, judged_end)
                           if judged_end > judged_start else {})
                mine, theirs = figures.get(lock.candidate, Figures()), figures.get(lock.stable, Figures())
                reference = theirs if theirs.requests or not mine.requests else \
                    self._stable_over_rollout(lock, judged_end, previous_stable)
            except IncompleteFigures as exc:  # partial figures: hold, never judge (let alone promote) on them
                self.emit(FiguresIncomplete(index, lock.plan, percent, str(exc)))
                if now < hold_end:
                    continue
                return Verdict("rollback", [f"figures still incomplete after holding {settings.max_hold_seconds:g} s "
                                            f"(MAX_HOLD_SECONDS): {exc}"], thresholds=thresholds,
                               insufficient=True), stable_outcome
            verdict = judge(mine, reference, thresholds, candidate_ready=True)
            quality, stable_outcome = self._quality(lock, judged_start, judged_end, previous_outcome)
            verdict.quality = quality.as_json() if quality else None
            self.emit(FiguresRead(index, lock.plan, percent, started, now, (judged_start, judged_end), window_end,
                                  hold_end, mine, theirs, verdict))
            if quality is not None and quality.decision == "rollback" and verdict.decision != "rollback":
                verdict.decision = "rollback"  # healthy, fast, and wrong: judged by its answers
                verdict.reasons = quality.reasons + verdict.reasons
                return verdict, stable_outcome
            if now < window_end and mine.requests < thresholds.min_requests:
                continue
            if verdict.decision == "rollback" or (verdict.decision == "promote" and now >= window_end):
                final = judge(mine, reference, thresholds, candidate_ready=self.service.revision_ready(lock.candidate))
                final.quality = verdict.quality
                if final.decision == "promote" and quality is not None and quality.decision != "promote":
                    if now < label_end:
                        continue  # the server is judged; the answers are not yet: never promote without them
                    final.decision = PAUSE_FOR_LABELS
                    final.reasons = [f"labels still wanting {settings.label_wait_seconds:g} s after the window "
                                     f"(LABEL_WAIT_S): paused for a person (make promote or make rollback)",
                                     *quality.reasons]
                elif quality is not None:
                    final.reasons = final.reasons + quality.reasons
                return final, stable_outcome
            if verdict.decision == "hold" and now >= hold_end:
                verdict.decision = "rollback"
                verdict.insufficient = True
                verdict.reasons.append(f"still not judged after holding {settings.max_hold_seconds:g} s "
                                       f"(MAX_HOLD_SECONDS)")
                return verdict, stable_outcome

    def _stable_over_rollout(self, lock: Lock, end: float, previous_stable: Figures) -> Figures:
        """The stable revision's figures from the rollout's start to `end`: its latency under the load it carried,
        mostly every user's or nearly (the candidate at 100% carries them all, and one instance's p99 grows with its
        load). The step before's when Monitoring has none."""
        over = self.monitoring.figures(self.settings.service, lock.started, end).get(lock.stable, Figures())
        return over if over.requests else previous_stable

    # ------------------------------------------------------------ going back

    def _roll_back(self, lock: Lock, verdict: Verdict) -> int:
        entry = RolledBack(lock.candidate, lock.image, lock.digest, "; ".join(verdict.reasons),
                           barred=not verdict.insufficient, at=now_text())
        self._restore(lock, entry)
        t = verdict.thresholds
        self.emit(Decided(
            "rolled back",
            f"ROLLED BACK: 100% is on {lock.stable} again. {lock.candidate}: {entry.reason}. Thresholds: 5xx rate "
            f"<= {100 * t.max_error_rate:g}%, p99 <= {t.max_latency_ratio:g}x the stable p99 (or + "
            f"{t.min_latency_delta_ms:g} ms), breaches called at {100 * t.confidence:g}% confidence, at least "
            f"{t.min_requests} requests per step." + ("" if entry.barred else " It is not barred: it was not judged, "
                                                      "only short of requests; `make rollout` may try it again."),
            verdict=verdict))
        return EXIT_ROLLED_BACK

    def _restore(self, lock: Lock, entry: RolledBack) -> None:
        """100% on the stable revision, the lock removed and the candidate recorded, in one write; read and made
        again when it loses a race (never over someone else's change: if the lock is no longer ours, whoever took
        it decides)."""
        def attempt() -> None:
            service = self.service.describe()
            annotations = Annotations.of(service)
            if annotations.lock is not None and annotations.lock.id != lock.id:
                raise Stopped("another rollout holds the service now; this one stops without touching traffic")
            self.service.write(service, split=Split.all_on(lock.stable), lock=None,
                               rolled_back=annotations.with_rolled_back(entry))

        retrying(attempt, f"could not write 100% to {lock.stable}: the service kept changing")

    def _release(self, lock: Lock) -> bool:
        """A person changed the traffic: they are in charge now. The lock is removed (traffic untouched) if it is
        still this rollout's, so a later rollout starts afresh instead of resuming into their split."""
        def attempt() -> bool:
            service = self.service.describe()
            held_now = Annotations.of(service).lock
            if held_now is None or held_now.id != lock.id:
                return False
            self.service.write(service, lock=None)
            return True

        try:
            return retrying(attempt, "the service kept changing")
        except (ToolError, GcloudError, ApiError):
            return False  # it stays recorded as interrupted: `make traffic` explains, `make rollback` undoes

    def _fail_safe(self, lock: Lock, error: BaseException) -> int:
        """Anything that went wrong mid-rollout: users back on the stable revision, the record saying why, a non-zero
        exit. If even that write fails, the message says what to run."""
        what = f"{type(error).__name__}: {error}"
        self.say(f"\nFAILED: {what}")
        if not isinstance(error, (ToolError, GcloudError, ApiError)):
            self.say(traceback.format_exc().rstrip())
        entry = RolledBack(lock.candidate, lock.image, lock.digest, f"the rollout failed: {what}", barred=False,
                           at=now_text())
        try:
            self._restore(lock, entry)
            traffic = f"100% on {lock.stable}"
            message = f"100% is on {lock.stable} again; the candidate is not barred (it was not judged)."
        except Exception as restore_error:  # noqa: BLE001 - the last line of defence: say what to do
            traffic = f"NOT RESTORED: {type(restore_error).__name__}: {restore_error}"
            message = (f"COULD NOT RESTORE TRAFFIC ({restore_error}). Run: gcloud run services update-traffic "
                       f"{self.settings.service} --to-revisions {lock.stable}=100")
        self.emit(Decided("failed", message.lstrip(), reason=what, traffic=traffic))
        return EXIT_FAILED

