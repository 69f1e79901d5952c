"""The local Cloud Run, from the command line (what `make emulator`, `make emulator-status` and `make stop` run).

    python -m iris_tools.cloudrun start    start it in the background; return once it answers
    python -m iris_tools.cloudrun status   each service's traffic split and each revision's live figures
    python -m iris_tools.cloudrun stop     stop it: control plane, Envoy, every revision (state is kept)
    python -m iris_tools.cloudrun token    the bearer token for private services: curl -H "Authorization: Bearer $(...)"
    python -m iris_tools.cloudrun serve    run the control plane in the foreground (what `start` runs)

Settings (environment): RUN_DIR (default .run; state in $RUN_DIR/cloudrun, gcloud configuration in
$RUN_DIR/gcloud), PROJECT (default iris-local), REGION (default us-central1), RUNTIME (process or
docker; default process), CLOUDRUN_PORT (the Admin API's port; default: a free one, kept across restarts),
CLOUDRUN_HOLD_S (how long a request waits for its revision to (re)start before a 503; default 30),
CLOUDRUN_MONITORING (exact, the default, or cloudrun: timeSeries.list answers as Cloud Run's metrics come
back, with CLOUDRUN_MONITORING_ALIGN_S, _DELAY_S and _PAGE_SIZE; see metrics.Shape).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from iris_tools import environment
from iris_tools.cloudrun.endpoints import Api, make_server
from iris_tools.cloudrun.control import LocalCloudRun
from iris_tools.cloudrun.jobs import TERMINATION_GRACE_S
from iris_tools.cloudrun.metrics import Sampler, Shape
from iris_tools.environment import Environment
from iris_tools.google.api import GoogleApi
from iris_tools.google.monitoring import Monitoring
from iris_tools.google.targets import directories
from iris_tools.local.servers import HOST, ProcessServer, ServerError, adopt, free_port, port_is_free
from iris_tools.local.state import write_atomically


CONTROL_PLANE_RECORD = "controlplane.json"


def write_gcloud_config(config_dir: Path, project: str, region: str, api_port: int) -> None:
    """A gcloud configuration that sends run, cloudresourcemanager, monitoring and logging calls here, through
    gcloud's proxy settings (a regional endpoint gets the region prefixed to its host, so the override
    names a host that does not resolve and the proxy carries every request here)."""
    properties = f"""[core]
project = {project}
disable_usage_reporting = true
should_prompt_to_enable_api = false

[auth]
disable_credentials = true

[run]
region = {region}

[component_manager]
disable_update_check = true

[api_endpoint_overrides]
run = http://run.emulator/
cloudresourcemanager = http://resourcemanager.emulator/
monitoring = http://monitoring.emulator/
logging = http://logging.emulator/

[proxy]
type = http
address = {HOST}
port = {api_port}
"""
    (config_dir / "configurations").mkdir(parents=True, exist_ok=True)
    write_atomically(config_dir / "configurations" / "config_default", properties)
    write_atomically(config_dir / "active_config", "default")  # no trailing newline: gcloud needs it so


def settings() -> Environment:
    """The local Cloud Run's variables, parsed (a bad one ends the command naming it)."""
    try:
        return environment.read(os.environ, "emulator")
    except environment.SettingError as exc:
        raise SystemExit(f"error: {exc}") from None


def place(env: Environment) -> tuple[Path, str, str, str]:
    return env["RUN_DIR"], env["PROJECT"] or "iris-local", env["REGION"] or "us-central1", env["RUNTIME"]


# ---------------------------------------------------------------- serve (foreground)


def serve(port: int) -> int:
    env = settings()
    run_dir, project, region, runtime = place(env)
    state_dir, config_dir = directories(run_dir)
    cloud_run = LocalCloudRun(state_dir, project, region, runtime)
    sampler = Sampler(lambda: cloud_run.envoy.prometheus(),  # whichever Envoy runs now
                      instances=cloud_run.supervisor.instance_counts,
                      startups=lambda: list(cloud_run.supervisor.startups))
    # The Admin API's port is bound first: booting picks free ports (Envoy's admin, revisions), and one of
    # them could otherwise be this one, chosen but not yet bound. Callers wait in the backlog meanwhile.
    server = make_server(Api(cloud_run, sampler, Shape.from_environment(env)), HOST, port)
    cloud_run.boot()
    sampler.start()
    with cloud_run.lock:
        cloud_run.store.data["api_port"] = port
        cloud_run.store.save()
    write_gcloud_config(config_dir, project, region, port)
    cloud_run.jobs.boot()  # executions left unfinished go on, their tasks told this port's metadata server
    stopping = threading.Event()
    threading.Thread(target=cloud_run.supervisor.run, args=(stopping,), name="reconcile", daemon=True).start()
    threading.Thread(target=cloud_run.supervisor.run_autoscaler, args=(stopping,), name="autoscaler",
                     daemon=True).start()

    def stop_then_shut_down() -> None:
        cloud_run.jobs.stop_all()  # running tasks first (SIGTERM, SIGKILL), while the API they may call still answers
        server.shutdown()

    def shut_down(signum: int, frame: object) -> None:
        stopping.set()
        threading.Thread(target=stop_then_shut_down, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    print(f"local Cloud Run: Admin API on http://{HOST}:{port} (project {project}, region {region}, "
          f"runtime {runtime})", flush=True)
    server.serve_forever()
    sampler.stop()
    return 0


# ---------------------------------------------------------------- start / stop (background)


def _record_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_PLANE_RECORD


def _running(state_dir: Path) -> ProcessServer | None:
    path = _record_path(state_dir)
    if not path.exists():
        return None
    server = ProcessServer.adopt(json.loads(path.read_text()))
    return server if server.alive() else None


def _pick_port(state_dir: Path) -> int:
    wanted = settings()["CLOUDRUN_PORT"]
    if wanted is not None:
        return wanted
    saved = state_dir / "state.json"
    if saved.exists():
        port = json.loads(saved.read_text()).get("api_port")
        if port and port_is_free(port):
            return port
    return free_port()


def start() -> int:
    run_dir, project, region, runtime = place(settings())
    state_dir, config_dir = directories(run_dir)
    running = _running(state_dir)
    if running is not None:
        print(f"local Cloud Run already running on {running.url}; gcloud: export CLOUDSDK_CONFIG={config_dir}")
        return 0
    port = _pick_port(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "iris_tools.cloudrun", "serve", "--port", str(port)]
    server = ProcessServer.start(command, port=port, log=state_dir / "controlplane.log",
                                 env={"PYTHONUNBUFFERED": "1"})
    write_atomically(_record_path(state_dir), json.dumps(server.record()))
    try:
        server.wait_ready("/health", timeout=180)
    except ServerError as exc:
        stop()
        print(f"error: the local Cloud Run did not start: {exc}", file=sys.stderr)
        return 1
    print(f"local Cloud Run on {server.url} (project {project}, region {region}, runtime {runtime})")
    print(f"  log:    {state_dir / 'controlplane.log'}")
    print(f"  gcloud: export CLOUDSDK_CONFIG={config_dir.resolve()}")
    print("  then:   gcloud run deploy iris --image iris:svc")
    return 0


def stop() -> int:
    run_dir, project, region, runtime = place(settings())
    state_dir, _ = directories(run_dir)
    record = _record_path(state_dir)
    if not record.exists() and not (state_dir / "state.json").exists():
        print("local Cloud Run: nothing running")
        return 0
    if record.exists():
        adopt(json.loads(record.read_text())).stop(grace_s=10 + TERMINATION_GRACE_S)
        record.unlink()
    LocalCloudRun(state_dir, project, region, runtime).stop_all()
    print("stopped the local Cloud Run (its services are kept: make emulator starts them again)")
    return 0


# ---------------------------------------------------------------- status


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def status(window_s: float) -> int:
    run_dir, project, region, runtime = place(settings())
    state_dir, config_dir = directories(run_dir)
    server = _running(state_dir)
    if server is None:
        print("local Cloud Run is not running: start it with `make emulator`")
        return 1
    base = f"{server.url}/apis/serving.knative.dev/v1/namespaces/{project}"
    services = _get(f"{base}/services")["items"]
    print(f"local Cloud Run on {server.url}, project {project}, region {region}; figures over the last "
          f"{window_s:g} s")
    if not services:
        print("no services yet: CLOUDSDK_CONFIG=" + str(config_dir.resolve()) + " gcloud run deploy iris --image iris:svc")
    end = time.time()
    figures = revision_figures(server.url, project, end - window_s, end)
    instances = Monitoring(GoogleApi(server.url), project).instances(None, end, lookback_s=10)
    for service in services:
        name = service["metadata"]["name"]
        ready = next(c for c in service["status"]["conditions"] if c["type"] == "Ready")
        print(f"\nservice {name}  {service['status']['url']}  ready={ready['status']}"
              + (f"  ({ready.get('message')})" if ready["status"] != "True" else ""))
        print(f"  {'revision':<24} {'traffic':>7}  {'tag':<12} {'instances':>9} {'active':>6} {'requests':>8} "
              f"{'5xx %':>6} {'p50 ms':>7} {'p99 ms':>7}  url")
        shares: dict[str, int] = {}
        tags: dict[str, list[tuple[str, str]]] = {}
        for target in service["status"]["traffic"]:
            revision = target.get("revisionName") or "-"
            shares[revision] = shares.get(revision, 0) + int(target.get("percent") or 0)
            if target.get("tag"):
                tags.setdefault(revision, []).append((target["tag"], target["url"]))
        for revision in _get(f"{base}/revisions?labelSelector=serving.knative.dev/service%3D{name}")["items"]:
            revision_name = revision["metadata"]["name"]
            requests, errors, p50, p99 = figures.get(revision_name, (0, 0, None, None))
            tag_list = tags.get(revision_name, [("", "")])
            rate = f"{100 * errors / requests:.1f}" if requests else "-"
            counts = instances.get(revision_name)
            running, active = (str(sum(counts.values())), str(counts.get("active", 0))) if counts else ("-", "-")
            for number, (tag, url) in enumerate(tag_list):
                cells = (f"  {revision_name if number == 0 else '':<24} "
                         f"{(str(shares.get(revision_name, 0)) + '%') if number == 0 else '':>7}  {tag:<12} ")
                if number == 0:
                    cells += (f"{running:>9} {active:>6} {requests:>8} {rate:>6} {_ms(p50):>7} {_ms(p99):>7}  {url}")
                else:
                    cells += f"{'':>9} {'':>6} {'':>8} {'':>6} {'':>7} {'':>7}  {url}"
                print(cells.rstrip())
    return 0


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"<={value:g}"


def revision_figures(api_url: str, project: str, start: float, end: float) -> dict[str, tuple]:
    """revision -> (requests, 5xx, p50 ms, p99 ms) over [start, end], read through timeSeries.list by the
    same reader the rollout uses."""
    figures = Monitoring(GoogleApi(api_url), project).figures(None, start, end)
    return {name: (f.requests, f.errors, f.p50_ms, f.p99_ms) for name, f in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.cloudrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start")
    commands.add_parser("stop")
    commands.add_parser("token")
    status_command = commands.add_parser("status")
    status_command.add_argument("--window", type=float, default=60.0, help="seconds of figures (default 60)")
    serve_command = commands.add_parser("serve")
    serve_command.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.port)
    if args.command == "start":
        return start()
    if args.command == "stop":
        return stop()
    if args.command == "token":
        run_dir, project, region, runtime = place(settings())
        print(LocalCloudRun(directories(run_dir)[0], project, region, runtime).token())
        return 0
    return status(args.window)


if __name__ == "__main__":
    sys.exit(main())
