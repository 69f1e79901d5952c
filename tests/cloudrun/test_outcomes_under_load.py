"""Honest under load: a labelled load of 300 requests/s through the local Cloud Run, split 50/50 between two
revisions, with each revision's log rotating every megabyte. The figures the gate reads (the outcome reader the
rollout uses, over the load's window) and `make outcomes` equal the load generator's own counts exactly: predictions
per revision, labels, correct answers. One look is taken half-way, while lines are written and files rotate.

HONEST_SECONDS sets the load's length (60 s in the suite; the issue's 10 minutes is HONEST_SECONDS=600, measured in
docs/outcomes-benchmark.md)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.cloudrun.harness import WITH_FEEDBACK_KEY, CloudRunUnderTest, make, traffic_of
from tests.helpers import signed

pytestmark = pytest.mark.exclusive  # 300 requests/s and their labels take the machine's two cores

RATE, THREADS = 300.0, 6
SECONDS = float(os.environ.get("HONEST_SECONDS", "60"))
POINTS = {"setosa": (5.0, 3.4), "versicolor": (6.0, 2.8), "virginica": (6.8, 3.1)}


@dataclass
class LabelledTraffic:
    """Answers asked at RATE from THREADS keep-alive clients, each one's true label posted in batches of 500."""

    url: str
    answered: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, revision, predicted, label
    failures: list[str] = field(default_factory=list)
    labels_posted: int = 0

    def _ask(self, index: int, stop: threading.Event) -> None:
        rng = random.Random(index)
        session = requests.Session()
        interval, next_at = THREADS / RATE, time.monotonic()
        while not stop.is_set():
            label = rng.choice(list(POINTS))
            length, width = (value + rng.gauss(0, 0.3) for value in POINTS[label])
            try:
                response = session.get(f"{self.url}/?length={length:.2f}&width={width:.2f}", timeout=10)
                body = response.json()
                self.answered.append((response.headers["X-Answer-Id"], response.headers["X-Revision"],
                                      body["predicted_class"], label))
            except (OSError, ValueError, KeyError) as exc:
                self.failures.append(repr(exc))
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    def _post(self, session: requests.Session, upto: int) -> int:
        batch = [{"id": i, "label": label} for i, _, _, label in self.answered[self.labels_posted:upto]]
        for start in range(0, len(batch), 500):
            data, headers = signed(batch[start:start + 500])
            reply = session.post(f"{self.url}/feedback", data=data, headers=headers, timeout=30)
            assert reply.status_code == 200, reply.text
        return upto

    def run(self, seconds: float, halfway: callable) -> None:
        stop = threading.Event()
        askers = [threading.Thread(target=self._ask, args=(n, stop), daemon=True) for n in range(THREADS)]
        for thread in askers:
            thread.start()
        session, started, looked = requests.Session(), time.monotonic(), False
        while time.monotonic() - started < seconds:
            time.sleep(1.0)
            self.labels_posted = self._post(session, len(self.answered))
            if not looked and time.monotonic() - started >= seconds / 2:
                halfway()
                looked = True
        stop.set()
        for thread in askers:
            thread.join(timeout=30)
        self.labels_posted = self._post(session, len(self.answered))


def test_the_figures_equal_the_load_s_own_counts_at_300_per_second_with_the_logs_rotating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iris_tools.google.gcloud import Gcloud
    from iris_tools.quality.sources import OutcomeReader, store_for

    monkeypatch.setenv("LOG_MAX_MB", "1")
    cloud_run = CloudRunUnderTest(tmp_path / "run")
    cloud_run.start()
    try:
        cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", "--allow-unauthenticated", *WITH_FEEDBACK_KEY)
        cloud_run.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "candidate")
        service = cloud_run.describe()
        svc = next(r for r, p, _ in traffic_of(service) if p == 100)
        lin = next(t["revisionName"] for t in service["status"]["traffic"] if t.get("tag") == "candidate")
        cloud_run.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{svc}=50,{lin}=50")
        monkeypatch.setenv("RUN_DIR", str(cloud_run.run_dir))
        reader = OutcomeReader(store_for(Gcloud("local"), cloud_run.run_dir, None), "iris", "feedback")
        looks = []
        traffic = LabelledTraffic(service["status"]["url"])
        started = time.time()
        traffic.run(SECONDS, halfway=lambda: looks.append(reader.outcomes(started - 1, time.time() + 1)))
        time.sleep(1.5)  # the shippers write within tens of milliseconds
        ended = time.time()
        gate = reader.outcomes(started - 1, ended)
        report = make(cloud_run, "outcomes")
    finally:
        cloud_run.stop()
    assert traffic.failures == [] and traffic.labels_posted == len(traffic.answered)
    rate = len(traffic.answered) / SECONDS
    print(f"\nhonest under load: {len(traffic.answered)} answers in {SECONDS:g} s ({rate:.0f}/s), "
          f"{traffic.labels_posted} labels, {len(looks)} look half-way")
    assert rate >= 0.9 * RATE, rate  # the load the issue asks for, not less
    expected = {revision: {"predictions": sum(r == revision for _, r, _, _ in traffic.answered),
                           "correct": sum(r == revision and p == l for _, r, p, l in traffic.answered)}
                for revision in (svc, lin)}
    assert report.returncode == 0, report.stdout + report.stderr
    written = json.loads((cloud_run.run_dir / "report" / "outcomes.json").read_text())
    for figures in (gate.as_json(), written):
        for revision, wanted in expected.items():
            got = figures["revisions"][revision]
            assert (got["predictions"], got["labelled"], got["correct"]) == (
                wanted["predictions"], wanted["predictions"], wanted["correct"]), (revision, got, wanted)
        assert (figures["labels"], figures["unmatched"]) == (len(traffic.answered), 0)
    assert looks and 0 < sum(o.predictions for o in looks[0].revisions.values()) < len(traffic.answered)
    rotated = [path for path in (cloud_run.run_dir / "cloudrun" / "logs").iterdir() if path.suffix[1:].isdigit()]
    assert rotated, "the logs never rotated"
    mix = Counter(r for _, r, _, _ in traffic.answered)
    assert min(mix.values()) > 0.4 * len(traffic.answered)  # the split sent each its half
