"""`make shadow`: what users asked the stable revision, replayed to the candidate at 0%, against the models in-process."""

from __future__ import annotations

import json
import subprocess

import joblib
import numpy as np
import requests

from tests.cloudrun.harness import CloudRunUnderTest, Load, traffic_of
from tests.helpers import CLASS_NAMES, ROOT


def make(cloud_run: CloudRunUnderTest, target: str, *variables: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**cloud_run.env, "TARGET": "local", "STEP_SECONDS": "2", "LOCK_SETTLE_S": "0.5", "PUBLIC": "1", **settings}
    return subprocess.run(["make", "-s", "--no-print-directory", target, *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def users_ask(url: str, count: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    points = np.column_stack([rng.uniform(4.3, 7.9, count), rng.uniform(2.0, 4.4, count)]).round(2)
    with requests.Session() as session:
        for x, y in points:
            assert session.get(f"{url}/?length={x}&width={y}", timeout=10).status_code == 200
    return points


def test_the_shadow_replays_what_users_asked_and_agrees_as_the_models_do(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    url = cloud_run.read()["status"]["url"]
    points = users_ask(url, 240)
    stable = next(r for r, p, _ in traffic_of(cloud_run.read()) if p == 100)
    result = make(cloud_run, "shadow", "MODEL=lin_svc")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((cloud_run.run_dir / "report" / "shadow.json").read_text())
    svc, lin_svc = (joblib.load(ROOT / "functions" / name / "model.joblib") for name in ("svc", "lin_svc"))
    expected = float(np.mean(svc.predict(points) == lin_svc.predict(points)))
    assert report["n"] == 240 and report["failed_requests"] == 0
    assert report["agreement"] == round(expected, 4)
    low, high = report["agreement_ci95"]
    assert low < report["agreement"] < high
    stable_mix = {c: int(np.sum(svc.predict(points) == i)) for i, c in enumerate(CLASS_NAMES)}
    assert {c: report["class_mix"]["stable"].get(c, 0) for c in CLASS_NAMES} == stable_mix
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 240
    assert report["latency"]["stable"]["p50_ms"] > 0 and report["latency"]["candidate"]["p50_ms"] > 0
    assert f"agreement {100 * report['agreement']:.1f}% of 240 inputs" in result.stdout
    assert traffic_of(cloud_run.read())[0][1] == 100  # still all on the stable revision

    with Load(url, threads=2) as load:  # a shadow while users are served: they never see the candidate
        again = make(cloud_run, "shadow", "MODEL=lin_svc")
    assert again.returncode == 0, again.stderr
    assert load.failures == [] and set(load.revisions) == {stable} and load.total > 0

    gated = make(cloud_run, "rollout", f"REVISION={report['candidate']}", MIN_AGREEMENT="0.99")
    assert gated.returncode != 0 and "below MIN_AGREEMENT 99%; no traffic moved" in gated.stdout
    assert {r: p for r, p, _ in traffic_of(cloud_run.read()) if p} == {stable: 100}


def test_a_shadow_without_prediction_logs_says_why(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", "--set-env-vars", "LOG_PREDICTIONS=0")
    users_ask(cloud_run.read()["status"]["url"], 20)
    result = make(cloud_run, "shadow", "MODEL=lin_svc")
    assert result.returncode != 0 and "no prediction logs of" in result.stderr
    assert "LOG_PREDICTIONS must be above 0" in result.stderr
