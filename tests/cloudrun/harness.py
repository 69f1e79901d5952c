"""A local Cloud Run for one test: its own run folder and ports, driven with the real gcloud, always stopped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from iris_tools.rollout.records import Annotations
from tests.helpers import FEEDBACK_KEY, ROOT

# A deploy whose service takes labels: the tests' feedback key, as `make feedback-key` prints it for a deploy.
WITH_FEEDBACK_KEY = ("--set-env-vars", f"FEEDBACK_KEY={FEEDBACK_KEY}")

ANSI = re.compile(r"\x1b\[[0-9;]*m")
GCLOUD = os.environ.get("GCLOUD", "/usr/bin/gcloud")
PROJECT = "iris-local"
SERVICES = f"/apis/serving.knative.dev/v1/namespaces/{PROJECT}/services"  # the Admin API's services


@dataclass
class CloudRunUnderTest:
    run_dir: Path
    runtime: str = "process"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RUN_DIR": str(self.run_dir), "RUNTIME": self.runtime,
                "CLOUDSDK_CONFIG": str(self.run_dir / "gcloud")}

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "iris_tools.cloudrun", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        started = self.cli("start")
        assert started.returncode == 0, started.stdout + started.stderr

    def stop(self) -> subprocess.CompletedProcess:
        return self.cli("stop")

    def gcloud(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """gcloud as a user runs it, its output without colour codes. A `run deploy` that says nothing of
        invoker access deploys public (--allow-unauthenticated): most tests are about traffic, and
        tests/cloudrun/test_invoker_access.py is about private services (Cloud Run's default, and ours)."""
        if args[:2] == ("run", "deploy") and not any("allow-unauthenticated" in arg for arg in args):
            args = (*args, "--allow-unauthenticated")
        result = subprocess.run([GCLOUD, *args, "--quiet"], env=self.env, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        result.stdout, result.stderr = (ANSI.sub("", result.stdout), ANSI.sub("", result.stderr))
        return result

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        result = self.gcloud(*args)
        assert result.returncode == 0, f"gcloud {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def describe(self, service: str = "iris") -> dict:
        return json.loads(self.ok("run", "services", "describe", service, "--format=json").stdout)

    def read(self, service: str = "iris") -> dict:
        """The service as the Admin API answers it (what `describe` prints), read without starting gcloud:
        for tests whose point is not gcloud's own output (each gcloud start costs a second or two)."""
        response = requests.get(f"{self.api()}{SERVICES}/{service}", timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def state(self) -> dict:
        return json.loads((self.run_dir / "cloudrun" / "state.json").read_text())

    def control_plane(self) -> dict:
        return json.loads((self.run_dir / "cloudrun" / "controlplane.json").read_text())

    def api(self) -> str:
        return f"http://127.0.0.1:{self.state()['api_port']}"

    def token(self) -> str:
        return (self.run_dir / "cloudrun" / "token").read_text().strip()


def traffic_of(service: dict) -> list[tuple[str, int, str | None]]:
    """(revision, percent, tag) for each status.traffic entry, in order."""
    return [(t.get("revisionName"), t.get("percent", 0), t.get("tag")) for t in service["status"]["traffic"]]


@dataclass
class Load:
    """Steady requests (GETs, or GETs and POSTs from alternate clients) on a URL from a few threads until stopped (bounded by
    `limit_s`); counts every answer.

    Paced at `rate` requests/s in all: users, not a benchmark. Unpaced, four threads took a core and made
    every gcloud command under test three times slower; at 300/s this client alone still took half a
    core. At 150/s a 5% step still sees the tests' MIN_REQUESTS (20) within about 3 s."""

    url: str
    threads: int = 4
    rate: float = 150.0
    limit_s: float = 600.0  # a guard against a test that never stops it, not a test duration
    methods: tuple[str, ...] = ("GET",)  # one per thread, in turn: ("GET", "POST") makes half the clients POST
    headers: dict[str, str] = field(default_factory=dict)
    revisions: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    total: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(self.methods[n % len(self.methods)],), daemon=True)
                         for n in range(self.threads)]

    def _run(self, method: str) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.limit_s
        interval = self.threads / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_at = time.monotonic()  # behind: do not make up for it in a burst
            revision, failure = None, None
            try:
                if method == "POST":
                    response = session.post(self.url + "/", json={"instances": [[5.8, 3.4]]}, timeout=10,
                                            headers=self.headers)
                else:
                    response = session.get(self.url + "/?length=5.8&width=3.4", timeout=10, headers=self.headers)
                if response.status_code == 200 and response.headers.get("X-Revision"):
                    revision = response.headers["X-Revision"]
                else:
                    failure = f"{method} HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                failure = f"{method} {type(exc).__name__}: {exc}"
            with self._lock:
                self.total += 1
                if failure is not None:
                    self.failures.append(failure)
                else:
                    self.revisions[revision] += 1

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)


# The rollout tools, made fast for tests: short steps, few requests, frequent polls.
# MIN_LATENCY_DELTA_MS: these tests share 2 cores with the other test workers, so one version's p99 can read tens
# of ms above the other's for a second when a neighbour starts a server: at 100% the stable figures come from
# earlier steps, under another neighbour's load. CI rolled a healthy candidate back on 75 ms against 10 ms. No test
# here judges a few ms of latency: the faulty "slow" version is 300 ms late, far above 100 ms, and the gate's
# bound at its default of 5 ms is tested in tests/unit/test_gate.py.
FAST = {"STEPS": "5 50 100", "STEP_SECONDS": "3", "MIN_REQUESTS": "20", "POLL_SECONDS": "0.5",
        "LOCK_SETTLE_S": "0.5", "MAX_HOLD_SECONDS": "20", "PUBLIC": "1", "WARMUP_REQUESTS": "20",
        "MIN_LATENCY_DELTA_MS": "100",
        "ROLLBACK_WINDOW": "0"}  # the load calls without a token


def make(cloud_run: CloudRunUnderTest, target: str, *variables: str, timeout: float = 300,
         **settings: str) -> subprocess.CompletedProcess:
    env = {**cloud_run.env, "TARGET": "local", "FEEDBACK_KEY": FEEDBACK_KEY, **FAST, **settings}
    return subprocess.run(["make", "-s", "--no-print-directory", target, *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def shares(cloud_run: CloudRunUnderTest) -> dict[str, int]:
    return {r: p for r, p, _ in traffic_of(cloud_run.read()) if p}


def annotation(cloud_run: CloudRunUnderTest, key: str):
    """One of the rollout's annotations ("rollout", "history", "rolled-back"), parsed by the record module, in its
    JSON form (None when absent)."""
    parsed = Annotations.of(cloud_run.read())
    found = {"rollout": parsed.lock.to_json() if parsed.lock else None, "history": parsed.history,
             "rolled-back": [entry.to_json() for entry in parsed.rolled_back]}[key]
    return found or None


def wait_for(check, timeout: float, what: str) -> float:
    """Seconds until `check()` is true; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (requests.RequestException, OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}")
