"""`make rollout`, `make rollback` and `make traffic` against the local Cloud Run, with the real gcloud, under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.svm import LinearSVC

from tests.cloudrun.harness import LocalCloudRun, Load, traffic_of
from tests.helpers import ROOT, write_model_version

FAULTY_MAIN = '''
    """A model version made to fail for rollout tests: {what}."""

    import random
    import time
    from pathlib import Path

    import flask

    from shared.function import serve_model

    _serve = serve_model(Path(__file__).parent)


    def predict(request: flask.Request) -> flask.Response:
        if request.path == "/":
            {fault}
        return _serve(request)
'''
FAULTS = {
    "flaky": ("a third of its answers are 500s",
              'if random.random() < 0.33:\n'
              '                return flask.Response(\'{"error": "injected"}\', status=500, mimetype="application/json")'),
    "slow": ("every answer 30 ms late, many times the stable p99", "time.sleep(0.03)"),
}
FAST = {"STEPS": "5 50 100", "STEP_SECONDS": "3", "MIN_REQUESTS": "20", "POLL_SECONDS": "0.5",
        "LOCK_SETTLE_S": "0.5", "MAX_HOLD_SECONDS": "20", "PUBLIC": "1", "WARMUP_REQUESTS": "20"}  # the load calls without a token


@pytest.fixture
def functions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """functions/ as shipped, plus two versions made to fail."""
    directory = tmp_path_factory.mktemp("functions")
    for shipped in (ROOT / "functions").glob("*/main.py"):
        (directory / shipped.parent.name).symlink_to(shipped.parent)
    for name, (what, fault) in FAULTS.items():
        write_model_version(directory / name, LinearSVC(random_state=0, max_iter=10_000))
        (directory / name / "main.py").write_text(textwrap.dedent(FAULTY_MAIN.format(what=what, fault=fault)))
    return directory


@pytest.fixture
def stable(tmp_path: Path, functions_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCloudRun]:
    """A local Cloud Run serving iris:svc at 100%, its models from `functions_dir`."""
    monkeypatch.setenv("IRIS_FUNCTIONS_DIR", str(functions_dir))
    emulator = LocalCloudRun(tmp_path / "run")
    emulator.start()
    try:
        emulator.ok("run", "deploy", "iris", "--image", "iris:svc")
        yield emulator
    finally:
        emulator.stop()


def make(cloud_run: LocalCloudRun, target: str, *variables: str, timeout: float = 300,
         **settings: str) -> subprocess.CompletedProcess:
    env = {**cloud_run.env, "TARGET": "local", **FAST, **settings}
    return subprocess.run(["make", "-s", "--no-print-directory", target, *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def shares(cloud_run: LocalCloudRun) -> dict[str, int]:
    return {r: p for r, p, _ in traffic_of(cloud_run.read()) if p}


def annotation(cloud_run: LocalCloudRun, key: str):
    raw = cloud_run.read()["metadata"]["annotations"].get(f"iris-versions.dev/{key}")
    return json.loads(raw) if raw else None


def test_a_healthy_rollout_moves_every_user_with_no_failed_request(stable: LocalCloudRun) -> None:
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]) as load:
        result = make(stable, "rollout", "MODEL=lin_svc")
    assert result.returncode == 0, result.stdout + result.stderr + f"\nload: {load.total} {load.failures[:3]}"
    assert load.failures == []
    after = shares(stable)
    (candidate, percent), = after.items()
    assert percent == 100 and candidate != before and load.revisions[candidate] > 0
    assert f"warmed up {candidate} with 20 requests at http://127.0.0.1:" in result.stdout
    assert ": 20 answered, slowest" in result.stdout
    assert "step 1/3 at 5%: PROMOTE" in result.stdout and "step 3/3 at 100%: PROMOTE" in result.stdout
    assert f"{candidate} serves 100% of service iris" in result.stdout
    summary = result.stdout[result.stdout.index("step  share"):]
    assert [line.split()[1] for line in summary.splitlines()[1:4]] == ["5%", "50%", "100%"]
    assert annotation(stable, "history") == [before, candidate]
    assert annotation(stable, "rollout") is None
    report = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert report["decision"] == "promoted" and len(report["steps"]) == 3 and report["samples"]

    back = make(stable, "rollback")
    assert back.returncode == 0, back.stderr
    assert shares(stable) == {before: 100}
    assert annotation(stable, "rolled-back")[-1]["revision"] == candidate


@pytest.mark.parametrize("model, reason", [("flaky", "5xx rate"), ("slow", "p99")])
def test_a_faulty_candidate_is_rolled_back_at_the_first_step(stable: LocalCloudRun, model: str, reason: str) -> None:
    before = next(iter(shares(stable)))
    started = time.time()
    with Load(stable.read()["status"]["url"]) as load:
        result = make(stable, "rollout", f"MODEL={model}")
    assert result.returncode != 0, result.stdout + result.stderr  # 3 from the tool; make says 2
    assert "step 1/3 at 5%: ROLLBACK" in result.stdout and reason in result.stdout
    assert f"ROLLED BACK: 100% is on {before} again" in result.stdout
    assert shares(stable) == {before: 100}
    # Never more than the first step's share reached the candidate, by the data plane's own counters (Envoy's,
    # read through the monitoring API), and by what the load generator saw.
    candidate = annotation(stable, "rolled-back")[-1]["revision"]
    time.sleep(2.5)  # one stats flush and one sampler reading
    from iris_tools.cloudrun.__main__ import revision_figures

    counted = revision_figures(stable.api(), "iris-local", started - 1, time.time())
    total = sum(figures[0] for figures in counted.values())
    assert total >= load.total * 0.95
    warm_up = int(FAST["WARMUP_REQUESTS"])  # at the tag URL before the first step: no user's request
    for seen, n in ((counted[candidate][0] - warm_up, total - warm_up), (load.revisions[candidate], load.total)):
        assert seen <= 0.05 * n + 3 * (0.05 * 0.95 * n) ** 0.5 + 5, (seen, n)
    again = make(stable, "rollout", f"REVISION={candidate}")
    assert again.returncode != 0 and "was rolled back" in again.stderr and "FORCE=1" in again.stderr
    again = make(stable, "rollout", f"MODEL={model}")
    assert again.returncode != 0 and "was rolled back" in again.stderr


def test_a_candidate_that_cannot_start_never_receives_traffic(stable: LocalCloudRun) -> None:
    before = shares(stable)
    result = make(stable, "rollout", "MODEL=knn")
    assert result.returncode != 0
    assert "did not deploy and received no traffic" in result.stderr and "functions/knn/" in result.stderr
    assert shares(stable) == before


def test_too_few_requests_hold_the_step_then_roll_back(stable: LocalCloudRun) -> None:
    result = make(stable, "rollout", "MODEL=lin_svc", MAX_HOLD_SECONDS="2")  # no load at all
    assert result.returncode != 0
    assert "step 1/3 at 5%: ROLLBACK" in result.stdout
    assert "too few to judge" in result.stdout and "still too few requests after holding 2 s" in result.stdout
    assert list(shares(stable).values()) == [100]


def slow_rollout_at_its_first_step(stable: LocalCloudRun) -> tuple[subprocess.Popen, dict]:
    """`make rollout MODEL=lin_svc` with a 600 s window, once it has set its first step; and its lock."""
    env = {**stable.env, "TARGET": "local", **FAST, "STEP_SECONDS": "600", "MAX_HOLD_SECONDS": "600"}
    rollout = subprocess.Popen(["make", "-s", "rollout", "MODEL=lin_svc"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (annotation(stable, "rollout") or {}).get("step", -1) < 0:
        time.sleep(0.5)
    lock = annotation(stable, "rollout")
    if not lock or lock["step"] != 0:
        os.killpg(rollout.pid, signal.SIGKILL)
        rollout.wait(timeout=30)
        raise AssertionError("the rollout never reached its first step")
    return rollout, lock


def kill(rollout: subprocess.Popen) -> None:
    """What a lost terminal does to a rollout mid-step."""
    os.killpg(rollout.pid, signal.SIGKILL)
    rollout.wait(timeout=30)


def test_a_second_rollout_refuses_and_an_interrupted_one_is_explained_resumed_or_undone(stable: LocalCloudRun) -> None:
    before = next(iter(shares(stable)))
    url = stable.read()["status"]["url"]
    with Load(url) as load:
        first, lock = slow_rollout_at_its_first_step(stable)
        try:
            second = make(stable, "rollout", "MODEL=lin_svc")
            assert second.returncode != 0
            assert f"a rollout of {lock['candidate']} (from {before}) is running" in second.stderr
        finally:
            kill(first)
        assert shares(stable) == {before: 95, lock["candidate"]: 5}  # a split the rollout set, whole
        explained = make(stable, "traffic")
        assert explained.returncode == 0
        assert f"an interrupted rollout of {lock['candidate']} from {before} stopped at step 1 of 3 (5%)" \
            in explained.stdout and "`make rollout` resumes it" in explained.stdout
        resumed = make(stable, "rollout")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resuming the interrupted rollout" in resumed.stdout
    assert load.failures == []
    assert shares(stable) == {lock["candidate"]: 100}


def test_an_interrupted_rollout_can_be_undone_with_rollback(stable: LocalCloudRun) -> None:
    before = next(iter(shares(stable)))
    first, lock = slow_rollout_at_its_first_step(stable)
    kill(first)
    candidate = lock["candidate"]
    undone = make(stable, "rollback")
    assert undone.returncode == 0, undone.stderr
    assert shares(stable) == {before: 100} and annotation(stable, "rollout") is None
    assert annotation(stable, "rolled-back")[-1]["revision"] == candidate


def test_make_traffic_sets_a_split_by_model_name_and_shows_it(stable: LocalCloudRun) -> None:
    stable.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "lin-svc")
    result = make(stable, "traffic", "SPLIT=svc=90 lin_svc=10")
    assert result.returncode == 0, result.stderr
    models = {}
    for line in result.stdout.splitlines()[3:]:
        cells = line.split()
        models[cells[1]] = cells[2]
    assert models == {"svc": "90%", "lin_svc": "10%"}
    assert "lin-svc http://127.0.0.1:" in result.stdout
    bad = make(stable, "traffic", "SPLIT=svc=90 knn=10")
    assert bad.returncode != 0 and "no ready revision of model 'knn'" in bad.stderr
    bad = make(stable, "traffic", "SPLIT=svc=90 lin_svc=20")
    assert bad.returncode != 0 and "add up to 110, not 100" in bad.stderr


def test_a_split_someone_else_set_mid_step_stops_the_rollout_before_its_next_step(stable: LocalCloudRun) -> None:
    """Someone sets 70/30 while the rollout's first step runs: a split the rollout never sets, so however
    late gcloud applies it, the rollout's next step finds it. Broken on purpose (the check before each
    step deleted), it fails: the rollout set its own split over the person's and went on to 100%."""
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]):
        env = {**stable.env, "TARGET": "local", **FAST, "STEP_SECONDS": "10"}
        rollout = subprocess.Popen(["make", "-s", "rollout", "MODEL=lin_svc"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (annotation(stable, "rollout") or {}).get("step", -1) < 0:
            time.sleep(0.3)
        candidate = annotation(stable, "rollout")["candidate"]
        stable.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{before}=70,{candidate}=30")
        out, err = rollout.communicate(timeout=300)
    assert rollout.returncode != 0, out + err
    assert "Traceback" not in err
    assert "was changed by someone else during the rollout: it is" in err and "the rollout had set" in err
    assert f"{before} 70%" in err and f"{candidate} 30%" in err
    assert shares(stable) == {before: 70, candidate: 30}  # the person's split stands
