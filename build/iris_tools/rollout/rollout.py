"""A gradual migration from the stable revision to a candidate, gated on live figures; rollback; traffic by model.

Every change is a gcloud command and every figure comes from the Cloud Monitoring API, so the same
code runs against Cloud Run (TARGET=cloudrun) and the local Cloud Run (TARGET=local).

What a rollout keeps on the service itself, as annotations (as Cloud Run keeps its own):
  iris-versions.dev/rollout      the rollout in progress: candidate, stable, steps, the step reached,
                                 who runs it (host, pid) and when it last moved. Only one at a time.
  iris-versions.dev/history      the revisions that reached 100%, oldest first (what `rollback` reads)
  iris-versions.dev/rolled-back  revisions (and their images) rolled back, with why: not rolled out
                                 again unless forced
Traffic is only ever set by whole `update-traffic` commands, so a crash at any moment leaves a split
the rollout had set, never a half-applied one; `traffic` explains where it stopped.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from iris_tools.cloudrun.names import suggest_tag
from iris_tools.rollout.gate import Figures, Thresholds, Verdict, judge
from iris_tools.rollout.gcloud import Gcloud, GcloudError
from iris_tools.rollout.invoke import ask
from iris_tools.rollout.monitoring import Monitoring
from iris_tools.state import RUN_DIR, write_atomically

LOCK = "iris-versions.dev/rollout"
HISTORY = "iris-versions.dev/history"
ROLLED_BACK = "iris-versions.dev/rolled-back"
EXIT_ROLLED_BACK = 3
WARMUP_INPUT = [5.8, 3.4]  # the tutorial's test point


class RolloutError(Exception):
    """The rollout cannot go on; the message says why and what to do."""


@dataclass
class Settings:
    service: str = "iris"
    steps: list[int] = field(default_factory=lambda: [5, 25, 50, 100])
    step_seconds: float = 10.0
    max_hold_seconds: float = 30.0  # a step with too few candidate requests waits this long, then rolls back
    poll_seconds: float = 1.0
    delay_seconds: float = 0.0  # how late the monitoring API reports (Cloud Monitoring: a few minutes)
    lock_settle_seconds: float = 3.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    image: str = "iris"
    force: bool = False
    public: bool = False
    service_account: str | None = None
    min_agreement: float | None = None  # gate the first live step on a shadow comparison (off by default)
    warmup_requests: int = 20  # sent to the candidate's tag URL before its first live step

    @classmethod
    def for_target(cls, target: str, environ: dict[str, str] = os.environ) -> "Settings":
        """Defaults by target (Cloud Monitoring's delay sets the Cloud Run ones), each overridable."""
        cloud = target == "cloudrun"
        defaults = cls(step_seconds=600.0 if cloud else 10.0, poll_seconds=30.0 if cloud else 1.0,
                       delay_seconds=180.0 if cloud else 0.0, lock_settle_seconds=10.0 if cloud else 3.0,
                       thresholds=Thresholds(min_requests=100 if cloud else 50))

        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw in (None, ""):
                return default
            try:
                value = float(raw)
            except ValueError:
                raise RolloutError(f"{name}={raw!r} is not a number") from None
            if value < 0:
                raise RolloutError(f"{name}={raw!r} must not be negative")
            return value

        steps_text = environ.get("STEPS") or " ".join(map(str, defaults.steps))
        try:
            steps = [int(step) for step in steps_text.replace(",", " ").split()]
        except ValueError:
            raise RolloutError(f"STEPS={steps_text!r}: whole percentages, for example STEPS=\"5 25 50 100\"") from None
        if not steps or steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
            raise RolloutError(f"STEPS={steps_text!r}: increasing percentages from above 0 that end at 100")
        step_seconds = number("STEP_SECONDS", defaults.step_seconds)
        thresholds = Thresholds(
            max_error_rate=number("MAX_ERROR_RATE", defaults.thresholds.max_error_rate),
            max_latency_ratio=number("MAX_LATENCY_RATIO", defaults.thresholds.max_latency_ratio),
            min_latency_delta_ms=number("MIN_LATENCY_DELTA_MS", defaults.thresholds.min_latency_delta_ms),
            min_requests=int(number("MIN_REQUESTS", defaults.thresholds.min_requests)),
            confidence=number("CONFIDENCE", defaults.thresholds.confidence))
        if not 0.5 <= thresholds.confidence < 1:
            raise RolloutError(f"CONFIDENCE={thresholds.confidence:g}: a fraction from 0.5 to below 1, "
                               f"for example 0.99")
        min_agreement = number("MIN_AGREEMENT", -1.0)
        if min_agreement > 1:
            raise RolloutError(f"MIN_AGREEMENT={min_agreement:g}: a fraction from 0 to 1")
        return cls(service=environ.get("SERVICE") or "iris", steps=steps, step_seconds=step_seconds,
                   min_agreement=None if min_agreement < 0 else min_agreement,
                   warmup_requests=int(number("WARMUP_REQUESTS", defaults.warmup_requests)),
                   max_hold_seconds=number("MAX_HOLD_SECONDS", 3 * step_seconds),
                   poll_seconds=number("POLL_SECONDS", defaults.poll_seconds),
                   delay_seconds=number("MONITORING_DELAY_S", defaults.delay_seconds),
                   lock_settle_seconds=number("LOCK_SETTLE_S", defaults.lock_settle_seconds),
                   thresholds=thresholds, image=environ.get("IMAGE") or "iris",
                   force=environ.get("FORCE") in ("1", "true", "yes"),
                   public=environ.get("PUBLIC") in ("1", "true", "yes"),
                   service_account=environ.get("SERVICE_ACCOUNT") or None)


@dataclass
class Step:
    percent: int
    started: float
    ended: float | None = None
    candidate: Figures = field(default_factory=Figures)
    stable: Figures = field(default_factory=Figures)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)


def model_of(image: str) -> str | None:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


class Migration:
    """One service's traffic on one target: rollout, rollback, traffic."""

    def __init__(self, gcloud: Gcloud, settings: Settings, out: TextIO = sys.stdout,
                 monitoring: Monitoring | None = None) -> None:
        self.gcloud = gcloud
        self.settings = settings
        self.out = out
        self.monitoring = monitoring or Monitoring.from_gcloud(gcloud)
        self.report_dir = Path(os.environ.get("RUN_DIR") or RUN_DIR) / "rollout"

    # ------------------------------------------------------------ reading the service

    def describe(self) -> dict[str, Any]:
        try:
            return self.gcloud.json("run", "services", "describe", self.settings.service)
        except GcloudError as exc:
            if "Cannot find service" in str(exc):
                raise RolloutError(f"service {self.settings.service} does not exist on {self.gcloud.target}: deploy "
                                   f"the stable version first (gcloud run deploy {self.settings.service} "
                                   f"--image {self.settings.image}:svc)") from None
            raise

    def revisions(self) -> list[dict[str, Any]]:
        return self.gcloud.json("run", "revisions", "list", "--service", self.settings.service)

    @staticmethod
    def annotation(service: dict[str, Any], key: str, default: Any) -> Any:
        raw = service["metadata"].get("annotations", {}).get(key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default

    @staticmethod
    def shares(service: dict[str, Any]) -> dict[str, int]:
        shares: dict[str, int] = {}
        for target in service["status"].get("traffic", []):
            if target.get("percent"):
                name = target.get("revisionName")
                shares[name] = shares.get(name, 0) + int(target["percent"])
        return shares

    @staticmethod
    def ready(revision: dict[str, Any]) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in revision.get("status", {}).get("conditions", []))

    # ------------------------------------------------------------ writing annotations (gcloud services replace)

    def annotate(self, changes: dict[str, Any], service: dict[str, Any] | None = None) -> None:
        """Set (or, with None, remove) annotations with `gcloud run services replace`: the template is sent
        back unchanged, so no revision is made. `service`: a description just read, to save reading it again."""
        service = service or self.describe()
        document = {"apiVersion": service.get("apiVersion", "serving.knative.dev/v1"), "kind": "Service",
                    "metadata": {key: service["metadata"][key] for key in ("name", "labels", "annotations")
                                 if key in service["metadata"]},
                    "spec": service["spec"]}
        annotations = document["metadata"].setdefault("annotations", {})
        for key, value in changes.items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = json.dumps(value, separators=(",", ":"))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            json.dump(document, handle)  # JSON is YAML
        try:
            self.gcloud.run("run", "services", "replace", handle.name)
        finally:
            os.unlink(handle.name)

    def set_traffic(self, shares: dict[str, int]) -> None:
        split = ",".join(f"{revision}={percent}" for revision, percent in shares.items() if percent)
        self.gcloud.run("run", "services", "update-traffic", self.settings.service, "--to-revisions", split)

    # ------------------------------------------------------------ the lock

    def _lock_is_live(self, lock: dict[str, Any]) -> bool:
        if lock.get("host") == socket.gethostname():
            try:
                os.kill(int(lock["pid"]), 0)
                return True
            except (ProcessLookupError, ValueError, KeyError):
                return False
            except PermissionError:
                return True
        stale_after = 3 * self.settings.step_seconds + self.settings.max_hold_seconds + 120
        return time.time() - float(lock.get("updated", 0)) < stale_after

    def lock_state(self, service: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        """(the recorded rollout or None, whether it is still running)."""
        lock = self.annotation(service, LOCK, None)
        return (lock, self._lock_is_live(lock)) if lock else (None, False)

    def acquire(self, candidate: str, stable: str, resume: dict[str, Any] | None) -> dict[str, Any]:
        """Record this rollout on the service, then check, after a pause in which a racing rollout's write
        would land, that the record is still this one's. The history gains the stable revision."""
        service = self.describe()
        history = self.annotation(service, HISTORY, [])
        lock = {"id": uuid.uuid4().hex[:12], "candidate": candidate, "stable": stable, "steps": self.settings.steps,
                "step": resume.get("step", -1) if resume else -1, "host": socket.gethostname(), "pid": os.getpid(),
                "started": resume.get("started", time.time()) if resume else time.time(), "updated": time.time(),
                "image": (resume or {}).get("image")}
        changes: dict[str, Any] = {LOCK: lock}
        if not history or history[-1] != stable:
            changes[HISTORY] = [*history, stable][-20:]
        self.annotate(changes, service)
        time.sleep(self.settings.lock_settle_seconds)  # a racing rollout's write lands in this time
        held, _ = self.lock_state(self.describe())
        if not held or held.get("id") != lock["id"]:
            other = held or {}
            raise RolloutError(f"another rollout took service {self.settings.service} at the same time "
                               f"(candidate {other.get('candidate')}, pid {other.get('pid')} on {other.get('host')}); "
                               f"this one stops without changing traffic")
        return lock

    # ------------------------------------------------------------ rollout

    def rollout(self, model: str | None, revision: str | None) -> int:
        settings = self.settings
        service = self.describe()
        lock, live = self.lock_state(service)
        if lock and live:
            raise RolloutError(f"a rollout of {lock['candidate']} (from {lock['stable']}) is running on service "
                               f"{settings.service} (pid {lock['pid']} on {lock['host']}, at step "
                               f"{self._step_text(lock)}); wait for it, or stop it and `make rollback`")
        rolled_back = self.annotation(service, ROLLED_BACK, [])
        image = f"{settings.image}:{model}" if model else None
        resume = None
        if lock:  # interrupted: resume it, when this asks for the same candidate (or names none)
            same = (revision in (None, lock["candidate"])) and (model is None or image == lock.get("image"))
            if not same:
                raise RolloutError(f"an interrupted rollout of {lock['candidate']} is recorded at step "
                                   f"{self._step_text(lock)}: resume it with `make rollout` (no MODEL or REVISION), "
                                   f"or undo it with `make rollback`")
            resume, revision, model = lock, lock["candidate"], None
            print(f"resuming the interrupted rollout of {revision} at step {self._step_text(lock)}", file=self.out)
        for entry in rolled_back:
            if not settings.force and (entry.get("revision") == revision or (image and entry.get("image") == image)):
                raise RolloutError(f"{entry.get('revision')} ({entry.get('image')}) was rolled back at "
                                   f"{entry.get('at')}: {entry.get('reason')}; roll it out again with FORCE=1")
        shares = self.shares(service)
        stable = resume["stable"] if resume else max(shares, key=shares.get)
        if not resume and shares.get(stable) != 100:
            raise RolloutError(f"traffic is split ({self._split_text(shares)}): a rollout starts from one revision "
                               f"at 100%; settle it first with `make traffic SPLIT=...` or `make rollback`")
        if model:
            revision = self.deploy(model, image)
        elif revision is None:
            raise RolloutError("name the candidate: MODEL=<name> (deploys iris:<name>) or REVISION=<revision>")
        revisions = {r["metadata"]["name"]: r for r in self.revisions()}
        if revision not in revisions:
            raise RolloutError(f"revision {revision} does not exist in service {settings.service}")
        if revision == stable:
            raise RolloutError(f"{revision} already serves 100% of service {settings.service}")
        if not self.ready(revisions[revision]):
            raise RolloutError(f"candidate {revision} is not ready and gets no traffic")
        candidate_image = revisions[revision]["spec"]["containers"][0]["image"]
        if settings.min_agreement is not None and not resume:
            from iris_tools.rollout.shadow import Shadow

            report = Shadow(self, self.out).run(None, revision, self.report_dir.parent / "report" / "shadow.json")
            if report["agreement"] < settings.min_agreement:
                print(f"\nNOT ROLLED OUT: {revision} agrees with {stable} on {100 * report['agreement']:.1f}% of "
                      f"{report['n']} recent inputs, below MIN_AGREEMENT {100 * settings.min_agreement:g}%; "
                      f"no traffic moved.", file=self.out, flush=True)
                return EXIT_ROLLED_BACK
        lock = self.acquire(revision, stable, {**(resume or {}), "image": candidate_image})
        self.warm_up(revision)
        return self._walk(lock)

    def warm_up(self, revision: str) -> None:
        """WARMUP_REQUESTS predictions at the candidate's tag URL, four at a time, before users reach it:
        its first users do not pay its cold start (first connections, first calls), and the gate does not
        judge a cold start as a fault. Users never see these answers; they fall before the first window."""
        count = self.settings.warmup_requests
        if count <= 0:
            return
        url = next((t["url"] for t in self.describe()["status"].get("traffic", [])
                    if t.get("revisionName") == revision and t.get("url")), None)
        if url is None:
            print(f"{revision} has no tag URL: not warmed up (tag it to warm it up)", file=self.out, flush=True)
            return
        try:
            token = self.gcloud.identity_token() or None
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

    def deploy(self, model: str, image: str) -> str:
        tag = suggest_tag(model)
        # Invoker access belongs to the service: PUBLIC=1 grants allUsers; otherwise the service keeps
        # the policy it has (private unless someone made it public), never widened or narrowed here.
        flags = ["--no-traffic", "--tag", tag, *(["--allow-unauthenticated"] if self.settings.public else [])]
        if self.settings.service_account:
            flags += ["--service-account", self.settings.service_account]
        print(f"deploying {image} to service {self.settings.service} with no traffic, tag {tag} ...", file=self.out,
              flush=True)
        try:
            self.gcloud.run("run", "deploy", self.settings.service, "--image", image, *flags)
        except GcloudError as exc:
            raise RolloutError(f"the candidate {image} did not deploy and received no traffic: {exc}") from None
        service = self.describe()
        tagged = next(t for t in service["status"]["traffic"] if t.get("tag") == tag)
        print(f"candidate {tagged['revisionName']} at {tagged.get('url', '(no tag URL)')}", file=self.out, flush=True)
        return tagged["revisionName"]

    def _walk(self, lock: dict[str, Any]) -> int:
        settings = self.settings
        candidate, stable = lock["candidate"], lock["stable"]
        record: dict[str, Any] = {"service": settings.service, "target": self.gcloud.target, "candidate": candidate,
                                  "stable": stable, "thresholds": asdict(settings.thresholds), "steps": [],
                                  "samples": [], "decision": None, "started": time.time()}
        previous_stable = Figures()
        start_index = max(0, lock.get("step", -1))
        print(f"rolling out {candidate} (stable {stable}) in steps {' '.join(f'{p}%' for p in settings.steps)}; "
              f"{settings.step_seconds:g} s and {settings.thresholds.min_requests} candidate requests per step",
              file=self.out, flush=True)
        for index in range(start_index, len(settings.steps)):
            percent = settings.steps[index]
            self.set_traffic({stable: 100 - percent, candidate: percent})
            lock.update(step=index, updated=time.time())
            self.annotate({LOCK: lock})
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
        service = self.describe()
        history = self.annotation(service, HISTORY, [])
        self.annotate({LOCK: None, HISTORY: [*history, candidate][-20:]}, service)
        record["decision"] = "promoted"
        self._save(record)
        print(self._summary(record), file=self.out)
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
            self._live_line(live, index, step, max(0.0, window_end - now), mine, theirs)
            if now < window_end and mine.requests < settings.thresholds.min_requests:
                continue
            verdict = judge(mine, reference, settings.thresholds, candidate_ready=True)
            if verdict.decision == "rollback" or (verdict.decision == "promote" and now >= window_end):
                if live:
                    print(file=self.out)
                ready = self._candidate_ready(candidate)
                return judge(mine, reference, settings.thresholds, candidate_ready=ready)
            if verdict.decision == "hold" and now >= hold_end:
                if live:
                    print(file=self.out)
                verdict.decision = "rollback"
                verdict.reasons.append(f"still too few requests after holding {settings.max_hold_seconds:g} s "
                                       f"(MAX_HOLD_SECONDS)")
                return verdict

    def _candidate_ready(self, candidate: str) -> bool:
        try:
            return self.ready(self.gcloud.json("run", "revisions", "describe", candidate))
        except GcloudError:
            return False

    def _live_line(self, live: bool, index: int, step: Step, left: float, mine: Figures, theirs: Figures) -> None:
        def part(name: str, f: Figures) -> str:
            rate = "-" if f.error_rate is None else f"{100 * f.error_rate:.1f}%"
            p99 = "-" if f.p99_ms is None else f"{f.p99_ms:g}"
            return f"{name} {f.requests} req 5xx {rate} p99 {p99} ms"

        text = (f"step {index + 1}/{len(self.settings.steps)} {step.percent}%  {left:4.0f} s left  "
                f"{part('candidate', mine)} | {part('stable', theirs)}")
        if live:
            print("\r" + text.ljust(118), end="", file=self.out, flush=True)
        else:
            print(text, file=self.out, flush=True)

    def _roll_back(self, candidate: str, stable: str, verdict: Verdict, record: dict[str, Any]) -> int:
        self.set_traffic({stable: 100})
        service = self.describe()
        rolled_back = self.annotation(service, ROLLED_BACK, [])
        image = next((r["spec"]["containers"][0]["image"] for r in self.revisions()
                      if r["metadata"]["name"] == candidate), None)
        entry = {"revision": candidate, "image": image, "reason": "; ".join(verdict.reasons),
                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.annotate({LOCK: None, ROLLED_BACK: [*rolled_back, entry][-20:]}, service)
        record["decision"] = "rolled back"
        record["verdict"] = verdict.as_json()
        self._save(record)
        print(self._summary(record), file=self.out)
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

    @staticmethod
    def _summary(record: dict[str, Any]) -> str:
        rows = [["step", "share", "seconds", "cand req", "cand 5xx", "cand p99", "stable req", "stable 5xx",
                 "stable p99", "verdict"]]
        for number, step in enumerate(record["steps"], 1):
            c, s = Figures(**step["candidate"]), Figures(**step["stable"])
            rows.append([str(number), f"{step['percent']}%", f"{step['ended'] - step['started']:.0f}",
                         str(c.requests), _rate(c), _ms(c.p99_ms), str(s.requests), _rate(s), _ms(s.p99_ms),
                         step["verdict"]])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n" + "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                                for row in rows)

    @staticmethod
    def _step_text(lock: dict[str, Any]) -> str:
        step = lock.get("step", -1)
        steps = lock.get("steps", [])
        return "none yet" if step < 0 else f"{step + 1} of {len(steps)} ({steps[step]}%)"

    @staticmethod
    def _split_text(shares: dict[str, int]) -> str:
        return ", ".join(f"{name} {percent}%" for name, percent in shares.items())

    # ------------------------------------------------------------ rollback

    def rollback(self) -> int:
        service = self.describe()
        shares = self.shares(service)
        current = max(shares, key=shares.get)
        lock, live = self.lock_state(service)
        if lock and live:
            raise RolloutError(f"a rollout of {lock['candidate']} is running (pid {lock['pid']} on {lock['host']}): "
                               f"stop it first")
        history = self.annotation(service, HISTORY, [])
        revisions = {r["metadata"]["name"]: r for r in self.revisions()}
        if lock:
            target, undone = lock["stable"], lock["candidate"]
        else:
            earlier = [name for name in history if name != current and name in revisions
                       and self.ready(revisions[name])]
            if not earlier:
                raise RolloutError(f"no earlier revision reached 100% of service {self.settings.service} "
                                   f"(history: {', '.join(history) or 'none'})")
            target, undone = earlier[-1], current
        self.set_traffic({target: 100})
        rolled_back = self.annotation(service, ROLLED_BACK, [])
        image = revisions.get(undone, {}).get("spec", {}).get("containers", [{}])[0].get("image")
        changes: dict[str, Any] = {LOCK: None, HISTORY: [*history, target][-20:]}
        if undone != target:
            changes[ROLLED_BACK] = [*rolled_back, {"revision": undone, "image": image, "reason": "make rollback",
                                                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}][-20:]
        self.annotate(changes, self.describe())
        print(f"100% of service {self.settings.service} is on {target} again"
              + (f"; {undone} is recorded as rolled back (FORCE=1 rolls it out again)" if undone != target else ""),
              file=self.out)
        return 0

    # ------------------------------------------------------------ traffic

    def set_split(self, split: str) -> int:
        revisions = self.revisions()
        shares: dict[str, int] = {}
        for item in split.replace(",", " ").split():
            name, sep, percent = item.partition("=")
            if not sep or not percent.isdigit():
                raise RolloutError(f"SPLIT: {item!r} is not NAME=PERCENT (example: SPLIT=\"svc=90 lin_svc=10\")")
            revision = self._revision_for(name, revisions)
            shares[revision] = shares.get(revision, 0) + int(percent)
        if sum(shares.values()) != 100:
            raise RolloutError(f"SPLIT: the shares add up to {sum(shares.values())}, not 100")
        lock, live = self.lock_state(self.describe())
        if lock and live:
            raise RolloutError(f"a rollout of {lock['candidate']} is running: it owns the traffic until it ends")
        self.set_traffic(shares)
        service = self.describe()
        changes: dict[str, Any] = {LOCK: None} if lock else {}
        history = self.annotation(service, HISTORY, [])
        winner = next((name for name, percent in shares.items() if percent == 100), None)
        if winner and (not history or history[-1] != winner):
            changes[HISTORY] = [*history, winner][-20:]
        if changes:
            self.annotate(changes, service)
        return self.show()

    def _revision_for(self, name: str, revisions: list[dict[str, Any]]) -> str:
        """A model name (svc) -> the newest ready revision of image <...>:svc; a revision name as itself."""
        if any(r["metadata"]["name"] == name for r in revisions):
            return name
        candidates = [r for r in revisions if model_of(r["spec"]["containers"][0]["image"]) == name and self.ready(r)]
        if not candidates:
            known = sorted({model_of(r["spec"]["containers"][0]["image"]) or "?" for r in revisions})
            raise RolloutError(f"no ready revision of model {name!r} in service {self.settings.service} "
                               f"(models deployed: {', '.join(known)}); deploy it first, e.g. make rollout MODEL={name}")
        return max(candidates, key=lambda r: r["metadata"].get("creationTimestamp", ""))["metadata"]["name"]

    def show(self) -> int:
        service = self.describe()
        revisions = {r["metadata"]["name"]: r for r in self.revisions()}
        now = time.time()
        window = max(60.0, self.settings.step_seconds)
        figures = self.monitoring.figures(self.settings.service, now - window - self.settings.delay_seconds,
                                          now - self.settings.delay_seconds)
        print(f"service {self.settings.service} on {self.gcloud.target}: {service['status']['url']}", file=self.out)
        print(f"figures over {window:g} s" + (f", {self.settings.delay_seconds:g} s behind (monitoring delay)"
                                              if self.settings.delay_seconds else ""), file=self.out)
        rows = [["revision", "model", "traffic", "tags", "requests", "5xx", "p50", "p99"]]
        shares = self.shares(service)
        tags: dict[str, list[str]] = {}
        for target in service["status"].get("traffic", []):
            if target.get("tag"):
                tags.setdefault(target.get("revisionName"), []).append(f"{target['tag']} {target.get('url', '')}".strip())
        for name, revision in sorted(revisions.items(), key=lambda item: item[1]["metadata"].get("creationTimestamp", ""),
                                     reverse=True):
            f = figures.get(name, Figures())
            rows.append([name, model_of(revision["spec"]["containers"][0]["image"]) or "?",
                         f"{shares.get(name, 0)}%", ", ".join(tags.get(name, [])) or "-", str(f.requests), _rate(f),
                         _ms(f.p50_ms), _ms(f.p99_ms)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=self.out)
        lock, live = self.lock_state(service)
        if lock and live:
            print(f"\na rollout of {lock['candidate']} from {lock['stable']} is running: step "
                  f"{self._step_text(lock)} (pid {lock['pid']} on {lock['host']})", file=self.out)
        elif lock:
            print(f"\nan interrupted rollout of {lock['candidate']} from {lock['stable']} stopped at step "
                  f"{self._step_text(lock)}; traffic is as that step set it ({self._split_text(shares)}). "
                  f"`make rollout` resumes it; `make rollback` returns 100% to {lock['stable']}.", file=self.out)
        for entry in self.annotation(service, ROLLED_BACK, []):
            print(f"rolled back: {entry.get('revision')} ({entry.get('image')}) at {entry.get('at')}: "
                  f"{entry.get('reason')}", file=self.out)
        return 0


def _rate(f: Figures) -> str:
    return "-" if f.error_rate is None else f"{100 * f.error_rate:.1f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:g} ms"
