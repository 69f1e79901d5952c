"""`make rollout`, `make rollback` and `make traffic` against the local Cloud Run, with the real gcloud, under load."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sklearn.svm import SVC, LinearSVC

from iris_tools.local.processes import group_members
from iris_tools.rollout.records import LOCK_KEY
from tests.cloudrun.harness import (FAST, SERVICES, WITH_FEEDBACK_KEY, CloudRunUnderTest, Load, annotation, make,
                                   shares)
from tests.helpers import FEEDBACK_KEY, ROOT, write_model_version

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
    # 300 ms: many times the stable p99 even on a busy 2-core machine, where the stable revision's own p99 reads
    # 50 ms (Envoy's bucket) and a 30 ms delay hid inside its latency limit.
    "slow": ("every answer 300 ms late, many times the stable p99", "time.sleep(0.3)"),
    "broken": ("every answer a 500",
               'return flask.Response(\'{"error": "injected"}\', status=500, mimetype="application/json")'),
}


@pytest.fixture
def functions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """functions/ as shipped, plus two versions made to fail."""
    directory = tmp_path_factory.mktemp("functions")
    for shipped in (ROOT / "functions").glob("*/main.py"):
        (directory / shipped.parent.name).symlink_to(shipped.parent)
    for name, (what, fault) in FAULTS.items():
        write_model_version(directory / name, LinearSVC(random_state=0, max_iter=10_000))
        (directory / name / "main.py").write_text(textwrap.dedent(FAULTY_MAIN.format(what=what, fault=fault)))
    write_model_version(directory / "wrong", LinearSVC(random_state=0, max_iter=10_000), shuffled_labels=True)
    write_model_version(directory / "again", SVC(kernel="linear"))  # the stable svc trained again: the same answers
    return directory


@pytest.fixture
def stable(tmp_path: Path, functions_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudRunUnderTest]:
    """A local Cloud Run serving iris:svc at 100%, its models from `functions_dir`, labels signed with the tests' key
    accepted (a candidate the rollout deploys keeps the service's variables)."""
    monkeypatch.setenv("IRIS_FUNCTIONS_DIR", str(functions_dir))
    emulator = CloudRunUnderTest(tmp_path / "run")
    emulator.start()
    try:
        emulator.ok("run", "deploy", "iris", "--image", "iris:svc", *WITH_FEEDBACK_KEY)
        yield emulator
    finally:
        emulator.stop()


def test_a_healthy_rollout_moves_every_user_with_no_failed_request(stable: CloudRunUnderTest) -> None:
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
def test_a_faulty_candidate_is_rolled_back_at_the_first_step(stable: CloudRunUnderTest, model: str, reason: str) -> None:
    """And NOTIFY_URL (a webhook on loopback) got the rollout's start and its rollback, in order (and a hold past the
    step's window between them, when the machine was slow to judge), each with the text a chat shows, and the record
    says each was delivered."""
    from tests.unit.test_notify import Receiver

    before = next(iter(shares(stable)))
    started = time.time()
    hook = Receiver()
    try:
        with Load(stable.read()["status"]["url"]) as load:
            result = make(stable, "rollout", f"MODEL={model}", NOTIFY_URL=hook.url)
    finally:
        hook.close()
    assert result.returncode != 0, result.stdout + result.stderr  # 3 from the tool; make says 2
    assert "Traceback" not in result.stdout + result.stderr
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert record["decision"] == "rolled back" and len(record["steps"]) == 1, record.get("reason")
    told = [body["event"] for body in hook.bodies]  # a busy machine may hold the step past its window first
    assert told[0] == "started" and told[-1] == "rolled back" and set(told[1:-1]) <= {"held"}, told
    assert hook.bodies[-1]["text"].startswith(f"iris: ROLLED BACK: 100% is on {before} again")
    assert [(n["event"], n["delivered"]) for n in record["notices"]] == [(event, True) for event in told]
    assert record["verdict"]["decision"] == "rollback" and record["verdict"]["reasons"][0].startswith(reason), \
        record["verdict"]["reasons"]
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


def test_a_candidate_that_cannot_start_never_receives_traffic(stable: CloudRunUnderTest) -> None:
    before = shares(stable)
    result = make(stable, "rollout", "MODEL=knn")
    assert result.returncode != 0
    assert "did not deploy and received no traffic" in result.stderr and "functions/knn/" in result.stderr
    assert shares(stable) == before


def test_too_few_requests_hold_the_step_then_roll_back(stable: CloudRunUnderTest) -> None:
    result = make(stable, "rollout", "MODEL=lin_svc", MAX_HOLD_SECONDS="2")  # no load at all
    assert result.returncode != 0
    assert "step 1/3 at 5%: ROLLBACK" in result.stdout
    assert "too few to judge" in result.stdout and "still not judged after holding 2 s" in result.stdout
    assert list(shares(stable).values()) == [100]
    entry = annotation(stable, "rolled-back")[-1]
    assert entry["barred"] is False  # sent back unjudged: `make rollout` may try it again
    retried = make(stable, "rollout", f"REVISION={entry['revision']}", MAX_HOLD_SECONDS="2")
    assert "was rolled back" not in retried.stderr, retried.stderr


def slow_rollout_at_its_first_step(stable: CloudRunUnderTest) -> tuple[subprocess.Popen, dict]:
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
    """What a lost terminal does to a rollout mid-step; returns once no process of its group runs (a killed
    rollout's Python is a zombie for a moment after make is reaped: the lock must not count it live, and this
    waits for the kill to have happened, not for luck)."""
    os.killpg(rollout.pid, signal.SIGKILL)
    rollout.wait(timeout=30)
    deadline = time.monotonic() + 30
    while group_members(rollout.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_members(rollout.pid), "the killed rollout's processes still run"


def test_a_second_rollout_refuses_and_an_interrupted_one_is_explained_resumed_or_undone(stable: CloudRunUnderTest) -> None:
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
        left = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())  # written as it went
        assert (left["candidate"], left["decision"], left["at_step"], left["at_percent"]) == \
            (lock["candidate"], None, 0, 5)
        explained = make(stable, "traffic")
        assert explained.returncode == 0
        assert f"an interrupted rollout of {lock['candidate']} from {before} stopped at step 1 of 3 (5%)" \
            in explained.stdout and "`make rollout` resumes it" in explained.stdout
        resumed = make(stable, "rollout")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resuming the interrupted rollout" in resumed.stdout
    assert load.failures == []
    assert shares(stable) == {lock["candidate"]: 100}


def test_an_interrupted_rollout_can_be_undone_with_rollback(stable: CloudRunUnderTest) -> None:
    before = next(iter(shares(stable)))
    first, lock = slow_rollout_at_its_first_step(stable)
    kill(first)
    candidate = lock["candidate"]
    undone = make(stable, "rollback")
    assert undone.returncode == 0, undone.stderr
    assert shares(stable) == {before: 100} and annotation(stable, "rollout") is None
    assert annotation(stable, "rolled-back")[-1]["revision"] == candidate


def test_make_traffic_sets_a_split_by_model_name_and_shows_it(stable: CloudRunUnderTest) -> None:
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


def test_a_split_someone_else_set_mid_step_stops_the_rollout_at_its_next_poll(stable: CloudRunUnderTest) -> None:
    """Someone sets 70/30 while the rollout's first step runs (a 10 s step): the rollout's next poll finds it,
    and the rollout stops, changes nothing, and says so in its record. Broken on purpose (the check on each
    poll and before each step deleted), it fails: the rollout set its own split over the person's and went
    on to 100%."""
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
    assert "Traceback" not in out + err
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert record["decision"] == "stopped", record.get("reason")
    assert "was changed by someone else during the rollout: it is" in record["reason"]
    assert f"{before} 70%" in record["reason"] and f"{candidate} 30%" in record["reason"]
    assert shares(stable) == {before: 70, candidate: 30}  # the person's split stands
    # The person is in charge now: the lock is released, and the next rollout starts afresh with its own STEPS
    # (here refused until the split is settled), never "resuming" into the person's split. Broken on purpose (the
    # lock left behind, as before): the next rollout resumed the old plan and stopped again.
    assert annotation(stable, "rollout") is None and record["reason"].startswith("stopped by hand")
    unsettled = make(stable, "rollout", "MODEL=lin_svc", STEPS="10 100")
    assert unsettled.returncode != 0 and "resuming" not in unsettled.stdout and "traffic is split" in unsettled.stderr
    assert make(stable, "traffic", f"SPLIT={before}=100").returncode == 0
    with Load(stable.read()["status"]["url"]):
        fresh = make(stable, "rollout", "MODEL=lin_svc", STEPS="10 100")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout, fresh.stdout + fresh.stderr
    assert json.loads((stable.run_dir / "rollout" / "latest.json").read_text())["plan"] == [10, 100]


def test_make_rollback_aborts_a_running_rollout_and_the_rollout_stops_without_touching_traffic(
        stable: CloudRunUnderTest) -> None:
    """`make rollback` while a rollout holds the lock: 100% back on the stable revision at once; the rollout
    notices at its next poll, exits non-zero and records that it was aborted. Broken on purpose (rollback
    refusing a live lock, as before): it answered "stop it first" and traffic stayed at 95/5."""
    before = next(iter(shares(stable)))
    rollout, lock = slow_rollout_at_its_first_step(stable)
    try:
        aborted = make(stable, "rollback")
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        assert shares(stable) == {before: 100}
        assert rollout.wait(timeout=30) != 0
    finally:
        if rollout.poll() is None:
            kill(rollout)
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert record["decision"] == "aborted" and "make rollback" in record["reason"], record.get("reason")
    time.sleep(2)
    assert shares(stable) == {before: 100} and annotation(stable, "rollout") is None  # and it stayed so
    entry = annotation(stable, "rolled-back")[-1]
    assert entry["revision"] == lock["candidate"] and entry["barred"] and entry["digest"].startswith("iris@sha256:")


def test_a_rolled_back_version_stays_rolled_back(stable: CloudRunUnderTest) -> None:
    """lin_svc promoted, then `make rollback` twice: the second does not send traffic back to lin_svc
    (cloud-run-release-manager #112); SPLIT= and a new `make rollout` of the same image (a new revision, the
    same digest) are refused until FORCE=1. Broken on purpose (no bar in rollback): the second rollback
    sent 100% back to lin_svc."""
    before = next(iter(shares(stable)))
    with Load(stable.read()["status"]["url"]):
        promoted = make(stable, "rollout", "MODEL=lin_svc")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    candidate = next(iter(shares(stable)))
    assert make(stable, "rollback").returncode == 0 and shares(stable) == {before: 100}
    again = make(stable, "rollback")
    assert again.returncode != 0 and f"skipped: {candidate}" in again.stderr, again.stdout + again.stderr
    assert shares(stable) == {before: 100}
    split = make(stable, "traffic", f"SPLIT={before}=90 {candidate}=10")
    assert split.returncode != 0 and "was rolled back" in split.stderr and shares(stable) == {before: 100}
    redeployed = make(stable, "rollout", "MODEL=lin_svc")
    assert redeployed.returncode != 0 and "was rolled back" in redeployed.stderr, redeployed.stderr
    assert shares(stable) == {before: 100}
    forced = make(stable, "traffic", f"SPLIT={before}=90 {candidate}=10", FORCE="1")
    assert forced.returncode == 0, forced.stderr
    assert shares(stable) == {before: 90, candidate: 10}


def test_a_resume_keeps_the_steps_it_was_started_with_and_refuses_a_record_that_does_not_fit(
        stable: CloudRunUnderTest) -> None:
    """A rollout of 5 50 100 interrupted at 5% resumes with those steps and says whose plan it follows; STEPS that
    differ are refused, traffic untouched; a record whose step is outside its steps is refused, traffic untouched.
    Broken on purpose (the current STEPS read on resume, as before): the resumed lock said [10, 100]."""
    before = next(iter(shares(stable)))
    first, lock = slow_rollout_at_its_first_step(stable)
    kill(first)
    other = make(stable, "rollout", STEPS="10 100")
    assert other.returncode != 0 and 'follows its own plan, STEPS="5 50 100"' in other.stderr, other.stderr
    assert annotation(stable, "rollout")["id"] == lock["id"] and shares(stable) == {before: 95, lock["candidate"]: 5}
    env = {**stable.env, "TARGET": "local", **FAST, "STEP_SECONDS": "600", "MAX_HOLD_SECONDS": "600"}
    resumed = subprocess.Popen(["make", "-s", "rollout"], cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (annotation(stable, "rollout") or {}).get("id") == lock["id"]:
            time.sleep(0.3)
        assert annotation(stable, "rollout")["steps"] == [5, 50, 100]
        # and the gate shares 1 - CONFIDENCE over those 3 steps, not STEPS's 2 (broken on purpose: it said 2)
        latest = stable.run_dir / "rollout" / "latest.json"
        while time.monotonic() < deadline and json.loads(latest.read_text()).get("id") != \
                annotation(stable, "rollout")["id"]:
            time.sleep(0.3)
        assert json.loads(latest.read_text())["thresholds"]["steps"] == 3
    finally:
        kill(resumed)
    assert shares(stable) == {before: 95, lock["candidate"]: 5}
    record = dict(annotation(stable, "rollout"), step=7)
    service = stable.read()
    service["metadata"]["annotations"][LOCK_KEY] = json.dumps(record)  # edited by hand, badly
    written = requests.put(stable.api() + SERVICES + "/iris", json=service, timeout=30)
    assert written.status_code == 200, written.text
    refused = make(stable, "rollout")
    assert refused.returncode != 0 and "does not fit" in refused.stderr, refused.stdout + refused.stderr
    assert shares(stable) == {before: 95, lock["candidate"]: 5}


class FaultyMonitoring:
    """A proxy in front of the local Cloud Run (gcloud's and the tools' way in): everything passes through,
    except Cloud Monitoring's timeSeries.list once `armed`, which answers `fault` (an HTTP status, or "hang")."""

    def __init__(self, upstream_port: int, fault: str) -> None:
        self.fault = fault
        self.armed = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.armed.is_set() and "/timeSeries" in self.path:
                    if proxy.fault == "hang":
                        time.sleep(30)
                        return
                    if proxy.fault == "incomplete":  # a 200 whose figures Cloud Monitoring says are partial
                        data = json.dumps({"timeSeries": [], "executionErrors": [{"code": 4,
                                                                                  "message": "injected"}]}).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    self.send_response(int(proxy.fault))
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"code": int(proxy.fault), "message": "injected"}}).encode())
                    return
                connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection",)}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("fault", ["500", "401", "hang", "incomplete"])
def test_monitoring_failing_mid_step_sends_users_back_to_the_stable_revision(stable: CloudRunUnderTest,
                                                                            fault: str) -> None:
    """Cloud Monitoring answers 500, 401, or nothing, in the middle of the first step: the rollout puts 100%
    back on the stable revision, records what failed, and exits 1 without a traceback. Broken on purpose
    (no fail-safe, as before): the exception escaped and the canary kept its 5%. Figures it says are
    incomplete (executionErrors) hold the step, never promote it, then send users back as not judged."""
    before = next(iter(shares(stable)))
    config = stable.run_dir / "gcloud" / "configurations" / "config_default"
    original = config.read_text()
    proxy = FaultyMonitoring(stable.state()["api_port"], fault)
    config.write_text(original.replace(f"port = {stable.state()['api_port']}", f"port = {proxy.port}"))
    try:
        env = {**stable.env, "TARGET": "local", **FAST, "STEP_SECONDS": "600", "MAX_HOLD_SECONDS": "600",
               "API_TIMEOUT_S": "3"}
        if fault == "incomplete":
            env.update(STEP_SECONDS="3", MAX_HOLD_SECONDS="3")
        with Load(stable.read()["status"]["url"]):
            rollout = subprocess.Popen(["make", "-s", "rollout", "MODEL=lin_svc"], cwd=ROOT, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (annotation(stable, "rollout") or {}).get("step", -1) < 0:
                time.sleep(0.3)
            assert len(shares(stable)) == 2  # the canary serves
            proxy.armed.set()
            out, err = rollout.communicate(timeout=120)
    finally:
        config.write_text(original)
        proxy.close()
    assert rollout.returncode != 0 and "Traceback" not in out + err, out + err
    assert shares(stable) == {before: 100} and annotation(stable, "rollout") is None
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    if fault == "incomplete":
        assert record["decision"] == "rolled back" and "incomplete" in " ".join(record["verdict"]["reasons"])
        assert annotation(stable, "rolled-back")[-1]["barred"] is False
        return
    assert record["decision"] == "failed" and record["traffic"] == f"100% on {before}", record
    assert ("timed out" in record["reason"]) if fault == "hang" else (f"HTTP {fault}" in record["reason"])
    assert annotation(stable, "rolled-back")[-1]["barred"] is False  # not judged: not barred


@pytest.mark.parametrize("answer", ["promote", "rollback"])
def test_a_pause_step_waits_for_a_person(stable: CloudRunUnderTest, answer: str) -> None:
    """STEPS="5 pause 100": the rollout holds at 5% and `make traffic` says it waits; `make promote` lets it
    go on to 100%, `make rollback` aborts it. Broken on purpose (a pause read as a step done): it went on
    to 100% with nobody asking."""
    before = next(iter(shares(stable)))
    env = {**stable.env, "TARGET": "local", **FAST, "STEPS": "5 pause 100"}
    with Load(stable.read()["status"]["url"]):
        rollout = subprocess.Popen(["make", "-s", "rollout", "MODEL=lin_svc"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (annotation(stable, "rollout") or {}).get("paused"):
                assert rollout.poll() is None, rollout.communicate()
                time.sleep(0.3)
            lock = annotation(stable, "rollout")
            time.sleep(2)
            assert shares(stable) == {before: 95, lock["candidate"]: 5}  # held while it waits
            waiting = make(stable, "traffic")
            assert "is waiting at a pause" in waiting.stdout and "make promote" in waiting.stdout, waiting.stdout
            acted = make(stable, answer)
            assert acted.returncode == 0, acted.stdout + acted.stderr
            out, err = rollout.communicate(timeout=120)
        finally:
            if rollout.poll() is None:
                kill(rollout)
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    if answer == "promote":
        assert rollout.returncode == 0, out + err
        assert shares(stable) == {lock["candidate"]: 100} and record["decision"] == "promoted"
        assert any("promoted by" in reason for step in record["steps"] for reason in step["reasons"])
    else:
        assert rollout.returncode != 0 and record["decision"] == "aborted"
        assert shares(stable) == {before: 100}


def test_a_shadow_whose_every_replay_fails_refuses_clearly(stable: CloudRunUnderTest) -> None:
    """Every replay to the candidate answers 500: the shadow says so and exits non-zero. Broken on purpose (no
    check, as before): it crashed on the printout with a TypeError traceback."""
    with Load(stable.read()["status"]["url"]):
        time.sleep(2)  # users' predictions, logged by the stable revision
    result = make(stable, "shadow", "MODEL=broken")
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "every one of the" in result.stderr and "replays to" in result.stderr and "500" in result.stderr


@pytest.mark.parametrize("model, decision", [("flaky", "rolled back"), ("lin_svc", "promoted")])
def test_the_gate_judges_figures_shaped_as_cloud_run_sends_them(tmp_path: Path, functions_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch, model: str,
                                                                decision: str) -> None:
    """The local Monitoring API answering as Cloud Run's metrics come back (CLOUDRUN_MONITORING=cloudrun: points
    aligned to 2 s, visible 3 s after they end, exponential buckets, one series a page): a faulty candidate
    is still rolled back at its first step and a healthy one promoted. Broken on purpose (the reader taking
    the first page only): the candidate's series, on later pages, were never seen; it was sent back as "0
    candidate requests, too few to judge", its 5xx never counted."""
    monkeypatch.setenv("IRIS_FUNCTIONS_DIR", str(functions_dir))
    for key, value in {"CLOUDRUN_MONITORING": "cloudrun", "CLOUDRUN_MONITORING_ALIGN_S": "2",
                       "CLOUDRUN_MONITORING_DELAY_S": "3", "CLOUDRUN_MONITORING_PAGE_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    emulator = CloudRunUnderTest(tmp_path / "run")
    emulator.start()
    try:
        emulator.ok("run", "deploy", "iris", "--image", "iris:svc")
        with Load(emulator.read()["status"]["url"]):
            result = make(emulator, "rollout", f"MODEL={model}", MONITORING_DELAY_S="5", METRIC_RESOLUTION_S="2")
        record = json.loads((emulator.run_dir / "rollout" / "latest.json").read_text())
        assert record["decision"] == decision, f"{record['reason']}\n{result.stdout[-3000:]}{result.stderr}"
        if decision == "rolled back":
            assert len(record["steps"]) == 1 and "5xx rate" in record["verdict"]["reasons"][0]
    finally:
        emulator.stop()


def test_a_healthy_but_wrong_candidate_is_rolled_back_on_its_answers_at_its_first_step(
        stable: CloudRunUnderTest) -> None:
    """A candidate trained on shuffled labels answers fast and never errs: the server checks pass it. With LABELS,
    under a labelled load (answers labelled 0.5 s later through /feedback), its first step rolls it back on its
    answers. Broken on purpose (the quality verdict ignored): it reached 100%."""
    from iris_tools.quality.rehearsal import LabelledLoad

    before = next(iter(shares(stable)))
    load = LabelledLoad(stable.read()["status"]["url"], rate=60, label_delay_s=0.5, jitter=0.1, seed=3,
                        feedback_key=FEEDBACK_KEY)
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(300,), kwargs={"stop": stop.is_set}, daemon=True)
    sender.start()
    try:
        result = make(stable, "rollout", "MODEL=wrong", STEPS="50 100", LABELS="feedback", MIN_LABELS="20",
                      PAIRED="0")  # the live step's judgement (the paired check at 0% has a test of its own)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert result.returncode != 0 and "ROLLED BACK" in result.stdout, result.stdout + result.stderr
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert record["decision"] == "rolled back" and len(record["steps"]) == 1
    step = record["steps"][0]
    assert step["candidate"]["errors"] == 0 and step["quality"]["decision"] == "rollback"
    assert any("the candidate is worse" in r or "prediction mix moved" in r for r in step["reasons"]), step["reasons"]
    assert shares(stable) == {before: 100} and annotation(stable, "rolled-back")[-1]["barred"] is True
    assert load.failures == []
    # Every look says what it read: never fewer than the labels a revision was judged on, and growing as they come.
    looks = [sample["quality"] for sample in record["samples"] if sample.get("quality")]
    assert looks and all(look["seen"]["labels"] >= look["candidate"]["labelled"] + look["stable"]["labelled"]
                         and look["seen"]["predictions"] >= look["candidate"]["predictions"] for look in looks)
    assert looks[-1]["seen"]["labels"] >= looks[0]["seen"]["labels"] and "(read " in result.stdout


class AnonymousLabeller:
    """A client who can reach the public service and holds no feedback key: it asks as a user does, then labels each
    answer it got (by the X-Answer-Id it was given) to steer the verdict: the candidate's answers wrong and the
    stable revision's right (`against_candidate`), or the other way round. Its labels go unsigned, signed with a
    key of its own, or under a signature it saw on nothing (a made-up one), in turn."""

    CLASSES = ("setosa", "versicolor", "virginica")

    def __init__(self, url: str, stable: str, against_candidate: bool, rate: float) -> None:
        self.url, self.stable, self.against_candidate, self.rate = url, stable, against_candidate, rate
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []

    def _headers(self, turn: int, body: bytes) -> dict[str, str]:
        from shared.feedback_signature import HEADER, signature

        made_up = {0: {}, 1: {HEADER: signature(body, "a-key-of-my-own-0123456789")},
                   2: {HEADER: f"t={int(time.time())},v1={'0' * 64}"}}[turn % 3]
        return {"Content-Type": "application/json", **made_up}

    def run(self, stop: threading.Event) -> None:
        session, turn, next_at = requests.Session(), 0, time.monotonic()
        while not stop.is_set():
            try:
                answer = session.get(f"{self.url}/?length=5.{turn % 10}&width=3.{turn % 7}", timeout=10)
                predicted, revision = answer.json()["predicted_class"], answer.headers["X-Revision"]
                wrong = next(c for c in self.CLASSES if c != predicted)
                on_candidate = revision != self.stable
                label = wrong if on_candidate == self.against_candidate else predicted
                body = json.dumps({"id": answer.headers["X-Answer-Id"], "label": label}).encode()
                posted = session.post(f"{self.url}/feedback", data=body, headers=self._headers(turn, body), timeout=10)
                self.statuses[posted.status_code] += 1
            except (requests.RequestException, ValueError, KeyError) as exc:
                self.failures.append(repr(exc))
            turn += 1
            next_at += 1.0 / self.rate
            stop.wait(max(0.0, next_at - time.monotonic()))


def _rollout_beside_an_anonymous_labeller(stable: CloudRunUnderTest, model: str, against_candidate: bool,
                                          **settings: str):
    """`make rollout MODEL=<model> LABELS=feedback` under an honest labelled load (30 answers/s, signed labels 0.5 s
    later) and an anonymous labeller at twice its rate; the rollout's result, its record, and both clients."""
    from iris_tools.quality.rehearsal import LabelledLoad

    before = next(iter(shares(stable)))
    url = stable.read()["status"]["url"]
    honest = LabelledLoad(url, rate=30, label_delay_s=0.5, jitter=0.1, seed=7, feedback_key=FEEDBACK_KEY)
    anonymous = AnonymousLabeller(url, before, against_candidate, rate=60)
    stop = threading.Event()
    clients = [threading.Thread(target=honest.run, args=(300,), kwargs={"stop": stop.is_set}, daemon=True),
               threading.Thread(target=anonymous.run, args=(stop,), daemon=True)]
    for client in clients:
        client.start()
    try:
        result = make(stable, "rollout", f"MODEL={model}", STEPS="50 100", LABELS="feedback", MIN_LABELS="20",
                      PAIRED="0", LABEL_WAIT_S="120", **settings)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    return before, result, record, honest, anonymous


def test_an_anonymous_client_labelling_the_candidate_wrong_cannot_roll_back_a_candidate_as_good(
        stable: CloudRunUnderTest) -> None:
    """The stable svc trained again answers exactly as the stable one; an anonymous client at twice the honest rate
    labels its answers wrong and the stable's right. Every one of its labels is refused (401) and the candidate is
    promoted as it would be without the client. Broken on purpose (the signature not checked): the candidate was
    rolled back at its first step, "accuracy 0.0% ... the candidate is worse"."""
    before, result, record, honest, anonymous = _rollout_beside_an_anonymous_labeller(stable, "again", True)
    assert result.returncode == 0 and record["decision"] == "promoted", result.stdout[-3000:] + result.stderr
    assert anonymous.failures == [] and honest.failures == []
    assert set(anonymous.statuses) == {401} and anonymous.statuses[401] > 100, anonymous.statuses
    judged = [step["quality"] for step in record["steps"] if step.get("quality")]
    assert judged and all(q["candidate"]["accuracy"] >= q["stable"]["accuracy"] - 0.1 for q in judged
                          if q["candidate"]["accuracy"] is not None and q["stable"]["accuracy"] is not None)
    assert all(not (q.get("label_share") or {}).get("mismatched") for q in judged)


def test_an_anonymous_client_labelling_the_candidate_right_cannot_save_a_worse_one(stable: CloudRunUnderTest) -> None:
    """A candidate trained on shuffled labels; the anonymous client labels its answers right and the stable's wrong.
    Its labels are all refused, and the candidate is rolled back on its accuracy by the honest labels (the mix check,
    which needs no labels, is set aside with MAX_MIX_SHIFT=1 so that the verdict is the labels' own). Broken on
    purpose (the signature not checked): the candidate read far more accurate than the stable revision."""
    before, result, record, honest, anonymous = _rollout_beside_an_anonymous_labeller(stable, "wrong", False,
                                                                                      MAX_MIX_SHIFT="1")
    assert result.returncode != 0 and record["decision"] == "rolled back", result.stdout[-3000:] + result.stderr
    assert set(anonymous.statuses) == {401} and anonymous.statuses[401] > 30, anonymous.statuses
    step = record["steps"][0]
    quality = step["quality"]
    assert quality["decision"] == "rollback" and shares(stable) == {before: 100}
    assert any("the candidate is worse" in reason for reason in step["reasons"]), step["reasons"]
    assert quality["candidate"]["accuracy"] < quality["stable"]["accuracy"] - 0.2  # as the honest labels have it
    assert honest.failures == []


def test_a_worse_candidate_is_rolled_back_at_0_percent_on_the_stable_revision_s_labelled_inputs(
        stable: CloudRunUnderTest) -> None:
    """With LABELS, before any user moves: the stable revision's labelled answers (a labelled load ran on it) are
    replayed to the candidate, which is right on far fewer of the same inputs; it is rolled back with no step walked,
    no user's request ever reached it, and its replays count in no outcome. Broken on purpose (the paired verdict
    ignored): the rollout walked its first step and users reached the candidate."""
    from iris_tools.quality.rehearsal import LabelledLoad

    before = next(iter(shares(stable)))
    url = stable.read()["status"]["url"]
    load = LabelledLoad(url, rate=60, label_delay_s=0.3, jitter=0.1, seed=5, feedback_key=FEEDBACK_KEY)
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(300,), kwargs={"stop": stop.is_set}, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while load.labels_posted < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
        result = make(stable, "rollout", "MODEL=wrong", STEPS="50 100", LABELS="feedback", MIN_LABELS="50")
    finally:
        stop.set()
        sender.join(timeout=60)
    assert result.returncode != 0 and "ROLLED BACK" in result.stdout, result.stdout + result.stderr
    record = json.loads((stable.run_dir / "rollout" / "latest.json").read_text())
    assert record["decision"] == "rolled back" and record["steps"] == [], record.get("reason")
    paired = record["paired"]
    assert paired["decision"] == "rollback" and paired["task"] == "classifier" and paired["n"] >= 50, paired
    assert paired["candidate_accuracy"] < paired["stable_accuracy"] - 0.2 and "McNemar" in paired["reasons"][0]
    assert record["verdict"]["reasons"][0].startswith("paired check at 0%") and record["thresholds"]["paired"] is True
    candidate = annotation(stable, "rolled-back")[-1]["revision"]
    assert shares(stable) == {before: 100} and {a.revision for a in load.answered} == {before}
    assert load.failures == []
    report = make(stable, "outcomes")
    assert report.returncode == 0, report.stderr
    counted = json.loads((stable.run_dir / "report" / "outcomes.json").read_text())["revisions"]
    assert candidate not in counted  # its warm-up and its replays are the tools' own: no outcome counts them


def test_a_step_whose_labels_never_come_pauses_for_a_person_and_never_promotes_itself(
        stable: CloudRunUnderTest) -> None:
    """LABELS=feedback and users' answers, but no labels back: each step's server checks pass and it holds; after
    LABEL_WAIT_S it pauses for a person, and goes on only when `make promote` says so (at 100% too: with no labels
    there is no evidence). Broken on purpose (a quality hold taken as a pass): it went to 100% on its own."""
    before = next(iter(shares(stable)))
    env = {**stable.env, "TARGET": "local", **FAST, "STEPS": "50 100", "LABELS": "feedback", "LABEL_WAIT_S": "2"}
    with Load(stable.read()["status"]["url"]):
        rollout = subprocess.Popen(["make", "-s", "rollout", "MODEL=lin_svc"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            for index in (0, 1):
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not ((annotation(stable, "rollout") or {}).get("paused") and
                                                           annotation(stable, "rollout")["step"] == index):
                    assert rollout.poll() is None, rollout.communicate()
                    time.sleep(0.3)
                lock = annotation(stable, "rollout")
                assert lock["paused"] and lock["step"] == index
                wanted = {before: 50, lock["candidate"]: 50} if index == 0 else {lock["candidate"]: 100}
                time.sleep(1)
                assert shares(stable) == wanted  # held at its share: never promoted on no evidence
                assert make(stable, "promote").returncode == 0
            out, err = rollout.communicate(timeout=120)
        finally:
            if rollout.poll() is None:
                kill(rollout)
    assert rollout.returncode == 0, out + err
    assert "labels still wanting" in out and shares(stable) == {lock["candidate"]: 100}
