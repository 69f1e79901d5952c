"""What `python -m iris_tools.bench` measures: the serving targets, each a way to start one HTTP server.

To add a target, append a `Target` in `all_targets()`; bench.py needs no change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iris_tools.environment import value
from iris_tools.environment import ROOT
from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.local.servers import DOCKER, ContainerServer, ProcessServer, Server, free_port, http_status
from iris_tools.local.versions import function_command, imported, model_names, start_function

IMAGE: str = value("IMAGE")
VENV_BIN = Path(sys.executable).parent
TEST_POINT = (5.8, 3.4)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None

    def send(self, url: str, timeout: float = 1.0) -> int:
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        return http_status(url + self.path, timeout, self.method, self.body or None, headers)


def wait_ready(server: Server, request: Request, timeout: float) -> None:
    """Until `request` answers 200: the target's own single-prediction request, not just a health route."""
    server.wait_ready(ready=lambda: request.send(server.url) == 200, timeout=timeout, interval=0.005)


def start_process(command: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = ROOT,
                  cleanup: Callable[[], None] | None = None) -> Server:
    server = ProcessServer.start(command, port=port, env={"PORT": str(port), **(env or {})}, cwd=cwd)
    if cleanup is not None:
        stop = server.stop

        def stop_and_clean(grace_s: float = 15.0) -> None:
            stop(grace_s)
            cleanup()

        server.stop = stop_and_clean  # type: ignore[method-assign]
    return server


def start_container(image: str, port: int) -> Server:
    return ContainerServer.start(image, name=f"iris_bench_{uuid.uuid4().hex[:8]}", port=port)


def batch_rows(rows: int, seed: int = 0) -> list[list[float]]:
    """Deterministic points spread over the iris sepal range."""
    import numpy as np

    generator = np.random.default_rng(seed)
    return np.column_stack([generator.uniform(4.0, 8.0, rows), generator.uniform(2.0, 4.5, rows)]).round(2).tolist()


def instances_request(rows: int) -> Request:
    return Request("POST", "/", json.dumps({"instances": batch_rows(rows)}).encode(), "application/json")


def inprocess_rows_per_s(model: str) -> Callable[[int], float]:
    """rows/s of the trained estimator's own predict, in this process: the batch yardstick."""

    def measure(rows: int) -> float:
        import joblib
        import numpy as np

        estimator = joblib.load(FUNCTIONS_DIR / model / "model.joblib")
        X = np.array(batch_rows(rows))
        estimator.predict(X)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            estimator.predict(X)
            count += 1
        return count * rows / (time.perf_counter() - started)

    return measure


@dataclass
class Target:
    name: str
    group: str
    start_on: Callable[[int], Server]
    single: Request
    batch: Callable[[int], Request] | None = None
    inprocess: Callable[[int], float] | None = None
    image: str | None = None
    requires: list[Callable[[], str | None]] = field(default_factory=list)
    protocol: str = "tutorial"  # the single request: "tutorial" GET /?length=&width=, or "v2" infer
    description: str = ""
    predict_one: Callable[[], dict[str, float]] | None = None  # in-process ms of one row: the estimator's, ours

    def start(self) -> Server:
        return self.start_on(free_port())

    def unavailable(self) -> str | None:
        for check in self.requires:
            reason = check()
            if reason:
                return reason
        return None

    def image_size(self) -> int:
        inspected = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Size}}", self.image],
                                   capture_output=True, text=True, check=True)
        return int(inspected.stdout.strip())


def _needs_image(image: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            found = subprocess.run([DOCKER, "image", "inspect", image], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "no docker"
        return None if found.returncode == 0 else f"no image {image} (make images)"

    return check



GET_TEST_POINT = Request("GET", f"/?length={TEST_POINT[0]}&width={TEST_POINT[1]}")


def ours(model: str) -> Target:
    return Target(name=f"ours:{model}", group="ours",
                  description=f"functions/{model} under functions-framework; GET /?length=&width=, POST / instances; "
                              f"every prediction logged (LOG_PREDICTIONS=1, the default)",
                  start_on=lambda port: start_function(Path("functions") / model / "main.py", port),
                  single=GET_TEST_POINT, batch=instances_request, inprocess=inprocess_rows_per_s(model))


def ours_post(model: str) -> Target:
    """The same function asked one row by POST / (the JSON body the clients send), held to the same ceiling."""
    base = ours(model)
    return Target(name=f"ours-post:{model}", group="ours", start_on=base.start_on, protocol="post",
                  description=f"functions/{model} asked POST / {{\"instances\": [[5.8, 3.4]]}} (one row)",
                  single=Request("POST", "/", json.dumps({"instances": [list(TEST_POINT)]}).encode(),
                                 "application/json"))


def ours_container(model: str) -> Target:
    image = f"{IMAGE}:{model}"
    return Target(name=f"container:{model}", group="container", start_on=lambda port: start_container(image, port),
                  description=f"image {image} under docker (cold start: docker run to first 200)",
                  single=GET_TEST_POINT, batch=instances_request, image=image, requires=[_needs_image(image)])


FIXTURES = Path(__file__).resolve().parent / "fixtures"
BENCH_DIR = ROOT / ".bench"
MLSERVER_VENV = BENCH_DIR / "mlserver-venv"
BASELINE_MODEL = "svc"


def v2_request(model: str, rows: list[list[float]], name: str = "input-0") -> Request:
    body = {"inputs": [{"name": name, "shape": [len(rows), 2], "datatype": "FP64", "data": rows}]}
    return Request("POST", f"/v2/models/{model}/infer", json.dumps(body).encode(), "application/json")


def tutorial_flask() -> Target:
    """The tutorial's app: Flask's development server, pickle.load at import, clf.predict per request."""

    def start_on(port: int) -> Server:
        import pickle

        import joblib

        pickled = BENCH_DIR / f"{BASELINE_MODEL}.pkl"
        if not pickled.exists():
            BENCH_DIR.mkdir(exist_ok=True)
            pickled.write_bytes(pickle.dumps(joblib.load(FUNCTIONS_DIR / BASELINE_MODEL / "model.joblib")))
        return start_process([sys.executable, str(FIXTURES / "tutorial_flask.py"), str(pickled), str(port)], port)

    return Target(name="tutorial-flask", group="baseline", start_on=start_on, single=GET_TEST_POINT,
                  description="the tutorial's app: Flask dev server, pickle.load at import, clf.predict per GET")


def framework_ceiling() -> Target:
    """functions-framework answering a constant JSON object: the most any function can do here."""
    def start_on(port: int) -> Server:
        command = function_command(FIXTURES / "ceiling" / "main.py", port)
        command[command.index("--target") + 1] = "ceiling"
        return start_process(command, port)

    return Target(name="ff-ceiling", group="baseline",
                  description="functions-framework answering a constant JSON object: the framework's ceiling",
                  start_on=start_on, single=GET_TEST_POINT)


def _mlserver_installed() -> str | None:
    """MLServer lives in its own virtual environment, made by `make mlserver` (never during a run)."""
    if (MLSERVER_VENV / "bin" / "mlserver").exists():
        return None
    return f"MLServer is not installed in {MLSERVER_VENV.relative_to(ROOT)}: run `make mlserver` first"


def mlserver(model: str = BASELINE_MODEL) -> Target:
    """Seldon's MLServer with its scikit-learn runtime serving the same joblib artifact, with its defaults."""

    def start_on(port: int) -> Server:
        directory = Path(tempfile.mkdtemp(prefix="mlserver-", dir=BENCH_DIR))
        shutil.copy(FUNCTIONS_DIR / model / "model.joblib", directory / "model.joblib")
        (directory / "model-settings.json").write_text(json.dumps(
            {"name": model, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
        (directory / "settings.json").write_text(json.dumps(
            {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}))
        return start_process([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(directory)], port, cwd=directory,
                             cleanup=lambda: shutil.rmtree(directory, ignore_errors=True))

    return Target(name=f"mlserver:{model}", group="baseline", start_on=start_on,
                  description=f"MLServer 1.7.1 + mlserver-sklearn, defaults, on functions/{model}/model.joblib; V2 JSON",
                  single=v2_request(model, [list(TEST_POINT)]),
                  batch=lambda rows: v2_request(model, batch_rows(rows)), inprocess=inprocess_rows_per_s(model),
                  requires=[_mlserver_installed], protocol="v2")


def ours_v2(model: str) -> Target:
    """Our function spoken to as MLServer is: the same V2 request, JSON tensors."""
    base = ours(model)
    return Target(name=f"ours-v2:{model}", group="ours", start_on=base.start_on,
                  description=f"functions/{model} asked the same V2 JSON request as MLServer",
                  single=v2_request(model, [list(TEST_POINT)], name="features"),
                  batch=lambda rows: v2_request(model, batch_rows(rows), name="features"),
                  inprocess=inprocess_rows_per_s(model), protocol="v2")


class LocalCloudRunServer(Server):
    """A local Cloud Run in its own folder with one service at 100% on `model`: its URL is the service URL."""

    kind = "cloudrun"

    def __init__(self, control_plane: ProcessServer, run_dir: Path, url: str) -> None:
        super().__init__(control_plane.port)
        self.control_plane, self.run_dir, self._url = control_plane, run_dir, url

    @property
    def url(self) -> str:
        return self._url

    @classmethod
    def start(cls, model: str, api_port: int, concurrency: int | None = None,
              max_instances: int | None = None) -> "LocalCloudRunServer":
        BENCH_DIR.mkdir(exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="cloudrun-", dir=BENCH_DIR))
        control_plane = ProcessServer.start([sys.executable, "-m", "iris_tools.cloudrun", "serve", "--port",
                                             str(api_port)], port=api_port, env={"RUN_DIR": str(run_dir)},
                                            log=run_dir / "controlplane.log")
        control_plane.wait_ready("/health", timeout=120)
        template: dict = {"spec": {"containers": [{"image": f"iris:{model}"}]}}
        if concurrency is not None:
            template["spec"]["containerConcurrency"] = concurrency
        if max_instances is not None:
            template["metadata"] = {"annotations": {"autoscaling.knative.dev/maxScale": str(max_instances)}}
        service = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "bench"},
                   "spec": {"template": template}}
        request = urllib.request.Request(
            f"{control_plane.url}/apis/serving.knative.dev/v1/namespaces/iris-local/services",
            data=json.dumps(service).encode(), method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            url = json.loads(response.read())["status"]["url"]
        public = {"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}}
        grant = urllib.request.Request(
            f"{control_plane.url}/v1/projects/iris-local/locations/us-central1/services/bench:setIamPolicy",
            data=json.dumps(public).encode(), method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(grant, timeout=120).read()  # public, as wrk sends no token
        return cls(control_plane, run_dir, url)

    def _state(self) -> dict:
        return json.loads((self.run_dir / "cloudrun" / "state.json").read_text())

    def alive(self) -> bool:
        return self.control_plane.alive()

    def pids(self) -> list[int]:
        """Envoy and the revision's processes: what serves a request (the control plane does not)."""
        state = self._state()
        records = [state["envoy"], *(i for r in state["revisions"].values() for i in r.get("instances") or [])]
        return [pid for record in records for pid in ProcessServer.adopt(record).pids()]

    def logs(self, lines: int = 20) -> str:
        return self.control_plane.logs(lines)

    def record(self) -> dict:
        return {"kind": self.kind, "run_dir": str(self.run_dir)}

    def stop(self, grace_s: float = 15.0) -> None:
        # The control plane first: alive, it would start again the revisions that the stop below ends.
        self.control_plane.stop(grace_s)
        subprocess.run([sys.executable, "-m", "iris_tools.cloudrun", "stop"], env={**os.environ,
                       "RUN_DIR": str(self.run_dir)}, capture_output=True, timeout=120)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def local_cloud_run(model: str) -> Target:
    """The same function behind the local Cloud Run's data plane: Envoy (one worker) at the service URL."""
    return Target(name=f"cloudrun:{model}", group="cloudrun",
                  description=f"functions/{model} deployed to the local Cloud Run, called at its service URL "
                              f"(Envoy, one worker, in front); cold start: control plane start to first 200",
                  start_on=lambda port: LocalCloudRunServer.start(model, port), single=GET_TEST_POINT,
                  batch=instances_request)


SCALED_CONCURRENCY, SCALED_MAX_INSTANCES = 2, 4


def local_cloud_run_scaled(model: str) -> Target:
    """The same, with a concurrency of 2 an instance: at 8 and 32 connections the autoscaler runs 4 instances."""
    return Target(name=f"cloudrun-scaled:{model}", group="cloudrun",
                  description=f"functions/{model} on the local Cloud Run with --concurrency {SCALED_CONCURRENCY} "
                              f"--max-instances {SCALED_MAX_INSTANCES}: scaled out to {SCALED_MAX_INSTANCES} "
                              f"instances under load (RSS: the largest process / Envoy and every instance)",
                  start_on=lambda port: LocalCloudRunServer.start(model, port, SCALED_CONCURRENCY,
                                                                  SCALED_MAX_INSTANCES),
                  single=GET_TEST_POINT, batch=instances_request)


def ours_unlogged(model: str) -> Target:
    """The same function with prediction logging off: what logging costs."""
    base = ours(model)
    return Target(name=f"ours-nolog:{model}", group="logging", single=base.single, batch=base.batch,
                  description=f"functions/{model} with LOG_PREDICTIONS=0 (no prediction log lines)",
                  start_on=lambda port: start_function(Path("functions") / model / "main.py", port,
                                                       env={"LOG_PREDICTIONS": "0"}))


def all_targets() -> list[Target]:
    """The iris versions' targets (an imported model's own are pipeline_targets.py's: its requests differ)."""
    models = [name for name in model_names() if not imported(name)]
    return [tutorial_flask(), framework_ceiling(), mlserver(), *(ours(m) for m in models), ours_post(BASELINE_MODEL),
            ours_v2(BASELINE_MODEL),
            ours_unlogged(BASELINE_MODEL), local_cloud_run(BASELINE_MODEL), local_cloud_run_scaled(BASELINE_MODEL),
            *(ours_container(m) for m in models)]


# Single-prediction throughput goals: (baseline, least ratio, wording, protocols of ours it applies to).
# The ceiling and the tutorial app answer one prediction, so our GET and our one-row POST are held to them;
# MLServer is what a user would pick instead, so both our GET and our V2 answer are.
THROUGHPUT_GOALS = (("ff-ceiling", 0.9, "of the framework ceiling", ("tutorial", "post")),
                    ("mlserver:svc", 1.3, "x MLServer", ("tutorial", "v2")),
                    ("tutorial-flask", 1.9, "x the tutorial app", ("tutorial", "post")))


def ratios(results: list) -> list[str]:
    """The issue's targets, each as a ratio of figures from the same run, where both were measured."""
    by_name = {r.target: r for r in results}
    lines = []

    def single(name: str, connections: str = "8") -> float | None:
        result = by_name.get(name)
        return result.single.get(connections, {}).get("rps") if result else None

    for result in results:
        if result.group == "logging":
            logged, unlogged = single(f"ours:{result.target.split(':', 1)[1]}"), single(result.target)
            if logged and unlogged:
                ratio = logged / unlogged
                lines.append(f"- prediction logging on: {ratio:.3f} of the single req/s @8 with it off "
                             f"({result.target}; target >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'}")
        if result.group == "cloudrun":
            direct = f"ours:{result.target.split(':', 1)[1]}"
            one = by_name.get(result.target.replace("cloudrun-scaled", "cloudrun"))
            if result.target.startswith("cloudrun-scaled") and one is not None and result.rss_total_mb \
                    and one.rss_total_mb:
                per_instance = (result.rss_total_mb - one.rss_total_mb) / (SCALED_MAX_INSTANCES - 1)
                lines.append(f"- memory per instance: {per_instance:.0f} MB resident ({result.target}'s Envoy and "
                             f"{SCALED_MAX_INSTANCES} instances, {result.rss_total_mb:.0f} MB, less {one.target}'s "
                             f"Envoy and 1 instance, {one.rss_total_mb:.0f} MB, over the "
                             f"{SCALED_MAX_INSTANCES - 1} more)")
            goal = 0.9 if result.target.startswith("cloudrun-scaled") else 0.93
            for connections in ("8", "32"):
                through, called = single(result.target, connections), single(direct, connections)
                if through and called:
                    ratio = through / called
                    lines.append(f"- {result.target} single req/s @{connections} = {ratio:.3f} of {direct} called "
                                 f"directly (target >= {goal}): {'met' if ratio >= goal else 'NOT met'}")
    for name in (r.target for r in results if r.group == "ours"):
        ours_rps = single(name)
        protocol = by_name[name].protocol
        for other, goal, label, protocols in THROUGHPUT_GOALS:
            if protocol not in protocols:
                continue
            theirs = single(other)
            if ours_rps and theirs:
                ratio = ours_rps / theirs
                verdict = "met" if ratio >= goal else "NOT met"
                lines.append(f"- {name} single req/s @8 = {ratio:.3f} {label} (target >= {goal}): {verdict}")
        result = by_name[name]
        if result.cold_start_s is not None:
            lines.append(f"- {name} cold start {result.cold_start_s:.3f} s (target <= 0.30 s): "
                         f"{'met' if result.cold_start_s <= 0.30 else 'NOT met'}")
        if result.rss_mb is not None:
            lines.append(f"- {name} RSS {result.rss_mb:.0f} MB per serving process (target <= 60 MB): "
                         f"{'met' if result.rss_mb <= 60 else 'NOT met'}")
        ceiling_at_1 = single("ff-ceiling", "1")
        for rows, served in result.batch_rows_per_s.items():
            inprocess = result.inprocess_rows_per_s.get(rows)
            if inprocess:
                ratio = served / inprocess
                line = (f"- {name} batch of {int(rows):,}: {ratio:.3f} of in-process predict rows/s "
                        f"(target >= 0.5): {'met' if ratio >= 0.5 else 'NOT met'}")
                if ratio < 0.5 and ceiling_at_1:
                    # Why: the time the target leaves for a whole request, against an empty one.
                    budget_ms = int(rows) / (0.5 * inprocess) * 1000
                    line += (f"; it leaves {budget_ms:.2f} ms for the whole request, and the framework alone "
                             f"answers a constant in {1000 / ceiling_at_1:.2f} ms")
                lines.append(line)
    return lines
