"""Supervision: each revision's instances and Envoy brought to match the stored state, and kept so.

One reconcile loop (`reconcile`), run after every change and every RECONCILE_INTERVAL_S by `run`, sets
what is stored (desired) against what runs (observed), as Knative Serving's reconcilers do:
- each revision runs as many instances as its autoscaler decides (`autoscaler.py`, Knative's KPA): 0..N
  processes (containers under docker), each on a port of its own, all endpoints of the revision's Envoy
  cluster. `scale`, run every SAMPLE_S by `run_autoscaler`, reads each revision's requests in flight and
  queued from Envoy and asks the autoscaler; a request held for a revision at zero starts one at once.
- an instance that dies is replaced (with capped exponential back-off when it dies soon after its start);
  only a revision whose first start failed is failed for good (deploy a new one), as on Cloud Run.
- an instance scaled in is taken out of Envoy (confirmed) before it is stopped;
- an Envoy that dies is started again, on the configuration files it had;
- Envoy is fed the routes and endpoints whenever they change, and confirms them.
Under the state lock only the in-memory store is read and written: process starts, readiness waits and
Envoy's applies happen outside it, so reads and traffic changes answer while an instance starts.
Lock order: the apply lock, then the state lock; never the other way round.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
import urllib.request
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.cloudrun.autoscaler import TICK_S
from iris_tools.cloudrun.envoy import Backend, Envoy, Route
from iris_tools.cloudrun.instances import Instance, Pool
from iris_tools.cloudrun.digest import ImageNotRunnable
from iris_tools.cloudrun.resources import DEPLOYING, model_of_image
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store
from iris_tools.environment import value
from iris_tools.local.servers import Server, ServerError, adopt, free_port, port_is_free
from iris_tools.local.versions import start_version

STARTUP_TIMEOUT_S = 60.0
RECONCILE_INTERVAL_S = 0.5
TRACE_CONCURRENCY = 0.01  # what a request seen only by Envoy's counter adds to a sample's concurrency
SAMPLE_S = 0.1  # how often each revision's load is read from Envoy (the autoscaler averages it per second)
DEFAULT_CONCURRENCY = 80  # Cloud Run's defaults for containerConcurrency and timeoutSeconds
MAX_CONCURRENCY = 1000
DEFAULT_TIMEOUT_S = 300
STOP_GRACE_S = 5.0

# Why a revision is not ready, as Cloud Run's Revision conditions name it.
CONTAINER_MISSING = "ContainerMissing"
HEALTH_CHECK_FAILED = "HealthCheckContainerError"
CONTAINER_EXITED = "ContainerExited"


HOME_RELEASE_S = 0.5  # how long a dead instance's home port is given to be let go of before the revision moves


def _released(port: int, wait_s: float = HOME_RELEASE_S) -> bool:
    """Whether `port` is free, given a moment. An instance is found dead when its leader exits, and its gunicorn
    worker (same group, killed with it) may still be closing its copy of the listening socket: a restart in that
    instant found the port held and moved the revision's home. A port still held after `wait_s` is another
    process's."""
    deadline = time.monotonic() + wait_s
    while not port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class Observed:
    """What a revision is doing now: serving (an instance is ready), activating (scaling up from zero),
    starting (its first start, or again after a crash), restarting (waiting out a crash back-off), stopped
    (scaled to zero), failed."""

    state: str
    message: str = ""
    reason: str = ""


class Supervisor:
    def __init__(self, store: Store, directory: Path, routes: Routes, lock: threading.RLock) -> None:
        self.store = store
        self.directory = directory
        self.routes = routes
        self.lock = lock  # the state lock
        self._apply_lock = threading.Lock()
        self.envoy: Envoy | None = None
        self.pools: dict[str, Pool] = {}  # revision name -> its instances
        self._applied: tuple[list[Route], dict[str, Backend]] | None = None
        self.transitions: dict[str, dict[str, list[str]]] = {}  # "services/<name>" -> condition -> [status, time]
        self.startups: list[tuple[float, str, float]] = []  # (time.time(), revision, seconds) of each cold start
        self._next_tick = 0.0
        self.log_max_bytes = int(value("LOG_MAX_MB") * (1 << 20))  # each revision's log rotates at this size
        self._next_hosts = 0.0
        self._retiring: list[Instance] = []  # out of Envoy, being stopped; still in the state until they are

    # ------------------------------------------------------------ lifecycle

    def boot(self, wait_s: float = STARTUP_TIMEOUT_S) -> None:
        """Adopt (or start) Envoy, adopt every instance that proves it is its revision, start one instance of
        each revision that should run (concurrently), and wait up to `wait_s` for those starts."""
        with self.lock:
            self.envoy = Envoy.adopt(self.directory / "envoy", self.store.data.get("envoy"))
            now = time.monotonic()
            for name, revision in self.store.revisions.items():
                kept = []
                earlier = [revision.pop("server")] if revision.get("server") else []  # a state file of one process
                for record in [*(revision.get("instances") or []), *earlier]:
                    server = adopt(record)
                    if server.alive() and _answers_as(server, name):
                        pool = self._pool(name)
                        pool.instances[server.port] = Instance(name, server.port, now, server, ready_at=now)
                        pool.desired = max(pool.desired, len(pool.instances))  # the autoscaler decides from here
                        kept.append(record)
                    else:
                        server.stop(grace_s=2)
                revision["instances"] = kept
        self.reconcile()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(pool.starting() for pool in list(self.pools.values())):
            time.sleep(0.05)
        self.reconcile()

    def run(self, stopping: threading.Event) -> None:
        """Reconcile every RECONCILE_INTERVAL_S until `stopping` is set; a fault is logged, never fatal."""
        while not stopping.wait(RECONCILE_INTERVAL_S):
            try:
                self.reconcile()
            except Exception:  # the loop is what heals: it must outlive any one fault
                traceback.print_exc()

    def run_autoscaler(self, stopping: threading.Event) -> None:
        """Read the load and scale every SAMPLE_S until `stopping` is set; a fault is logged, never fatal."""
        while not stopping.wait(SAMPLE_S):
            try:
                self.scale()
            except OSError:
                pass  # Envoy restarting: the next reading will do
            except Exception:
                traceback.print_exc()

    def stop_all(self) -> None:
        """Stop every process the state records (instances, Envoy); keep the state itself."""
        with self.lock:
            for revision in self.store.revisions.values():
                for record in revision.get("instances") or []:
                    adopt(record).stop(grace_s=STOP_GRACE_S)
                revision["instances"] = []
            self.pools.clear()
            if self.store.data.get("envoy"):
                adopt(self.store.data["envoy"]).stop(grace_s=5)
                self.store.data["envoy"] = None
            self.store.save()

    # ------------------------------------------------------------ the autoscaler

    def scale(self) -> None:
        """One look at the load: feed each revision's autoscaler; every TICK_S (or at once, for a request held
        at zero) set each revision's desired instance count. Reconciles when a count changes."""
        envoy = self.envoy
        if envoy is None or not envoy.alive():
            return
        load = envoy.load()
        now = time.monotonic()
        hosts = envoy.hosts() if now >= self._next_hosts else {}  # per instance, once a second
        changed = False
        with self.lock:
            if hosts:
                self._next_hosts = now + 1.0
            tick = now >= self._next_tick
            if tick:
                self._next_tick = now + TICK_S
            for name, revision in self.store.revisions.items():
                if revision.get("failed"):
                    continue
                pool = self._pool(name)
                figures = load.get(name, {})
                refused, sent = figures.get("upstream_cx_connect_fail", 0), figures.get("upstream_rq_total", 0)
                poked = refused > pool.refused_seen and not pool.ready()
                # A request shorter than the sampling interval is seldom seen in flight; one sent since the last
                # look counts as a trace of load, so a window with a request in it is never taken for idle.
                traced = TRACE_CONCURRENCY if sent != pool.sent_seen else 0.0
                pool.refused_seen, pool.sent_seen = refused, sent
                in_flight = figures.get("upstream_rq_active", 0) + figures.get("upstream_rq_pending_active", 0)
                pool.autoscaler.observe(now, max(in_flight, traced, 1 if poked else 0))
                for port, stats in hosts.get(name, {}).items():
                    instance = pool.instances.get(port)
                    if instance is not None and (stats.get("rq_active", 0) > 0
                                                 or stats.get("rq_total", 0) != instance.requests_seen):
                        instance.last_active_at = now
                        instance.requests_seen = stats.get("rq_total", 0)
                activate = pool.desired == 0 and (poked or pool.autoscaler.wants_activation(len(pool.ready())))
                if tick or activate:
                    decision = pool.autoscaler.decide(now, len(pool.ready()), self._reachable(name),
                                                      bool(revision.get("ready")), len(pool.instances))
                    if decision.desired != pool.desired:
                        print(f"autoscaler: {name} {pool.desired} -> {decision.desired} instances "
                              f"({decision.reason})", flush=True)
                        pool.desired = decision.desired
                        changed = True
        if changed:
            self.reconcile()

    def _reachable(self, name: str) -> bool:
        """Whether the revision carries traffic or a tag (Knative applies minScale only then)."""
        service = self.store.revisions[name]["service"]
        return any(t.get("revisionName") == name and (t.get("percent") or t.get("tag"))
                   for t in self.routes.resolved_traffic(service))

    def _pool(self, name: str) -> Pool:
        """Under the state lock: the revision's pool, made on first sight with one instance if it should run
        (it carries traffic or a tag, is its service's latest, or is not yet deployed), as at boot."""
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = Pool.for_revision(self.store.revisions[name], 1 if name in self._initial() else 0)
        return pool

    def _initial(self) -> set[str]:
        names = set()
        for service in self.store.services:
            for target in self.routes.resolved_traffic(service):
                if target.get("revisionName") and (target.get("percent") or target.get("tag")):
                    names.add(target["revisionName"])
            latest = self.routes.latest(service, ready=False)
            if latest:
                names.add(latest)
        return names | {name for name, revision in self.store.revisions.items() if not revision.get("ready")}

    def desired(self, name: str) -> int:
        """Under the state lock: how many instances revision `name` should run now, within its bounds."""
        revision = self.store.revisions[name]
        if revision.get("failed"):
            return 0
        pool = self._pool(name)
        spec = pool.autoscaler.spec
        count = pool.desired
        if not revision.get("ready"):
            count = max(count, 1)  # its first start decides whether it is deployed at all
        if self._reachable(name):
            count = max(count, spec.min_scale)
        return min(count, spec.max_scale) if spec.max_scale else count

    # ------------------------------------------------------------ the loop

    def reconcile(self) -> None:
        """Each revision runs (or is starting) as many instances as it should; Envoy runs and serves the stored
        traffic. Never call it holding the state lock."""
        retired: list[Instance] = []
        with self.lock:
            now = time.monotonic()
            changed = False
            for name in list(self.pools):
                if name not in self.store.revisions:
                    retired.extend(self.pools.pop(name).instances.values())
            for name, revision in self.store.revisions.items():
                pool = self._pool(name)
                for port, instance in list(pool.instances.items()):
                    if instance.server is not None and instance.ready and not instance.server.alive():
                        pool.instances.pop(port)
                        pool.crashed_now(instance, now)
                        retired.append(instance)  # what is left of it (an exited container) is removed
                        revision.update({"message": f"An instance exited; starting another. Its last lines:\n"
                                                    f"{instance.server.logs(5)}", "reason": CONTAINER_EXITED})
                        changed = True
                want = self.desired(name)
                if want and not revision.get("port"):
                    revision["port"] = self._home_port(revision)  # routed to (and held for) from now on
                    changed = True
                missing = want - len(pool.instances)
                if missing > 0 and now >= pool.next_start_at and not (pool.starting() and not revision.get("ready")):
                    for _ in range(missing if revision.get("ready") else 1):
                        self._start_instance(name, revision, pool, now)
                surplus = sorted(pool.ready(), key=lambda i: (i.state(now) == "active", i.started_at))
                for instance in surplus[:max(0, len(pool.ready()) - want)] if not pool.starting() else []:
                    pool.instances.pop(instance.port)
                    retired.append(instance)
                    changed = True
            self._retiring.extend(instance for instance in retired if instance.server is not None)
            if changed or retired:
                self._record_instances()
                self.store.save()
        try:
            self.apply()  # a retired instance leaves Envoy (confirmed) before it is stopped
        finally:  # and is stopped even when Envoy could not confirm (a request sent to it is retried elsewhere)
            for instance in retired:
                if instance.server is not None:
                    threading.Thread(target=self._stop_retired, args=(instance,), daemon=True,
                                     name=f"stop-{instance.port}").start()

    def _stop_retired(self, instance: Instance) -> None:
        """Stop an instance Envoy no longer sends to (its requests in flight finish within the grace), then drop
        it from the state, which names it until then: a control plane killed meanwhile leaves no unknown process."""
        instance.server.stop(grace_s=STOP_GRACE_S)
        with self.lock:
            self._retiring.remove(instance)
            self._record_instances()
            self.store.save()

    def _record_instances(self) -> None:
        """Under the state lock: each revision's instance processes, as the state file keeps them (so `make
        stop` and a restarted control plane find them)."""
        retiring: dict[str, list[dict[str, Any]]] = {}
        for instance in self._retiring:
            retiring.setdefault(instance.revision, []).append(instance.server.record())
        for name, revision in self.store.revisions.items():
            pool = self.pools.get(name)
            if pool is not None:
                revision["instances"] = [i.server.record() for i in pool.instances.values() if i.server is not None]
                revision["instances"] += retiring.get(name, [])

    def observe(self, name: str) -> Observed:
        """What revision `name` is doing, read under the state lock."""
        revision = self.store.revisions[name]
        if revision.get("failed"):
            return Observed("failed", revision.get("message", ""), revision.get("reason") or CONTAINER_MISSING)
        pool = self._pool(name)
        if pool.ready():
            return Observed("serving")
        if pool.starting():
            if revision.get("ready") and not pool.crashed:
                return Observed("activating", "Scaling up from zero; requests wait for the instance.")
            return Observed("starting", revision.get("message") or DEPLOYING)
        if pool.crashed and self.desired(name):
            return Observed("restarting", revision.get("message", ""), revision.get("reason") or CONTAINER_EXITED)
        return Observed("stopped")

    def instance_counts(self) -> dict[str, dict[str, int]]:
        """Revision name -> instances by state ("active", "idle"), for Monitoring's instance_count."""
        now = time.monotonic()
        with self.lock:
            return {name: pool.counts(now) for name, pool in self.pools.items() if name in self.store.revisions}

    def envoy_alive(self) -> bool:
        return self.envoy is not None and self.envoy.alive()

    # ------------------------------------------------------------ the data plane

    def apply(self) -> None:
        """Envoy runs, and serves what the store says now (confirmed by Envoy before this returns)."""
        with self._apply_lock:
            if not self.envoy_alive():
                if self.envoy is not None:
                    self.envoy.stop()
                envoy = Envoy(self.directory / "envoy")
                envoy.start()  # on the files the last one had: it serves them from its first second
                with self.lock:
                    self.envoy = envoy
                    self.store.data["envoy"] = envoy.record()
                    self.store.save()
                self._applied = None
            with self.lock:
                backends = self._backends()
                wanted = (self.routes.table(set(backends)), backends)
                if wanted != self._applied:
                    self.store.save()  # a new tag's port, chosen by the table, is kept before it is served
            if wanted != self._applied:
                self.envoy.apply(*wanted)
                self._applied = wanted

    def _backends(self) -> dict[str, Backend]:
        """Every revision that has a port: where its ready instances listen (at zero, where its next one will,
        so a request is held there), and what its template asks of the data plane."""
        backends = {}
        for name, revision in self.store.revisions.items():
            if revision.get("port") and not revision.get("failed"):
                spec = revision["object"]["spec"]
                concurrency = spec.get("containerConcurrency")
                timeout = spec.get("timeoutSeconds")
                ports = tuple(sorted(i.port for i in self._pool(name).ready())) or (revision["port"],)
                backends[name] = Backend(
                    ports, MAX_CONCURRENCY if concurrency == 0 else int(concurrency or DEFAULT_CONCURRENCY),
                    int(timeout or DEFAULT_TIMEOUT_S))
        return backends

    # ------------------------------------------------------------ one instance

    def _start_instance(self, name: str, revision: dict[str, Any], pool: Pool, now: float) -> None:
        """Under the state lock: an instance on the revision's home port if no instance has it, else on a new
        one; started and waited for in a thread of its own."""
        if revision["port"] in pool.instances:
            port = self._free_port()
        else:
            if not _released(revision["port"]):  # a process not ours holds it: the revision moves home
                revision["port"] = self._free_port(revision)
            port = revision["port"]
        instance = pool.instances[port] = Instance(name, port, now)
        threading.Thread(target=self._start, args=(name, instance), name=f"start-{name}-{port}", daemon=True).start()

    def _start(self, name: str, instance: Instance) -> None:
        """Start `instance` of revision `name` and wait until it is ready (this thread only); record it."""
        server = None
        with self.lock:
            revision = self.store.revisions.get(name)
            if revision is None:
                return
            pool = self._pool(name)
            plan = self._plan(name, revision, instance.port)
            if isinstance(plan, str):
                pool.instances.pop(instance.port, None)
                self._start_failed(name, plan, CONTAINER_MISSING)
                return
        try:
            server = start_version(plan["model"], plan["host_port"], plan["runtime"], env=plan["environment"],
                                   log=plan["log"], container_name=plan["container"], image=plan["image"],
                                   as_in_image=True, log_max_bytes=self.log_max_bytes)
            with self.lock:
                instance.server = server
                self._record_instances()
                self.store.save()  # recorded before waiting: a crash now still knows the process to stop
            if plan["probe"]:
                server.wait_ready(plan["probe"], timeout=STARTUP_TIMEOUT_S)
            else:
                port = plan["host_port"]
                server.wait_ready(ready=lambda: not port_is_free(port), timeout=STARTUP_TIMEOUT_S)
        except ServerError as exc:
            if server is not None:
                server.stop(grace_s=2)
            with self.lock:
                pool.instances.pop(instance.port, None)
                message = str(exc) if server is None else (
                    f"The user-provided container failed to start and listen on the port defined provided by the "
                    f"PORT={plan['port']} environment variable. {exc}")
                self._start_failed(name, message, CONTAINER_MISSING if server is None else HEALTH_CHECK_FAILED)
                self._record_instances()
                self.store.save()
            return
        with self.lock:
            if name not in self.store.revisions or pool.instances.get(instance.port) is not instance:
                server.stop(grace_s=2)  # its revision was deleted (or it was retired) while it started
                return
            instance.ready_at = time.monotonic()
            instance.last_active_at = instance.ready_at
            self.startups.append((time.time(), name, instance.startup_s))
            del self.startups[:-10000]
            pool.crashed = False
            revision.update({"ready": True, "message": "", "reason": ""})
            self.store.save()
        self.apply()

    def _plan(self, name: str, revision: dict[str, Any], host_port: int) -> dict[str, Any] | str:
        """How to start an instance of the revision on loopback `host_port`, or why it cannot start."""
        spec = revision["object"]["spec"]
        container = spec["containers"][0]
        try:
            image = self.store.images().runnable(container["image"])
        except ImageNotRunnable as exc:
            return str(exc)
        model = model_of_image(image)
        runtime = self.store.data["runtime"]
        if runtime == "process" and (model is None or not (FUNCTIONS_DIR / model / "main.py").exists()):
            return (f"Image '{image}' not found: no model folder functions/{model or '?'}/ with a main.py "
                    f"(images are iris:<model>, one per folder of functions/)")
        # A container listens on its containerPort inside its own network, published on a loopback port.
        # Processes share this machine's ports, so a process revision listens on the loopback port itself and
        # PORT says which (the contract is "listen on $PORT"; two revisions may both say 8080).
        port_spec = (container.get("ports") or [{}])[0].get("containerPort")
        port = (int(port_spec) if port_spec else 8080) if runtime == "docker" else host_port
        environment = {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}
        environment.update({"PORT": str(port), "K_SERVICE": revision["service"], "K_REVISION": name,
                            "K_CONFIGURATION": revision["service"]})
        probe = (container.get("startupProbe") or {}).get("httpGet", {}).get("path")
        return {"model": model, "image": image, "runtime": runtime, "host_port": host_port, "port": port,
                "environment": environment, "probe": probe, "log": self.directory / "logs" / f"{name}.log",
                "container": f"cloudrun_{self.store.instance_id()}_{name}_{secrets.token_hex(3)}"}
        # a name of its own for each instance: an exited one, removed in the background, never shares it

    def _taken_ports(self, revision: dict[str, Any] | None = None) -> set[int]:
        """Ports a service, a tag, another revision or an instance holds."""
        taken = {port for service in self.store.services.values() for port in service.get("ports", {}).values()}
        taken |= {r.get("port") for r in self.store.revisions.values() if r is not revision}
        taken |= {port for pool in self.pools.values() for port in pool.instances}
        return taken

    def _free_port(self, revision: dict[str, Any] | None = None) -> int:
        taken = self._taken_ports(revision)
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def _home_port(self, revision: dict[str, Any]) -> int:
        """The revision's home port, kept across restarts (Envoy holds its requests there while it is at zero, and
        its first instance listens there); a new one only when another process holds it."""
        kept = revision.get("port")
        if kept and kept not in self._taken_ports(revision) and port_is_free(kept):
            return kept
        return self._free_port(revision)

    def _start_failed(self, name: str, message: str, reason: str) -> None:
        """Under the state lock. A revision that never served is failed for good (as a deploy that fails on
        Cloud Run); one that served before is tried again after a back-off."""
        revision = self.store.revisions[name]
        revision.update({"message": message, "reason": reason})
        pool = self._pool(name)
        if not revision.get("ready"):
            for instance in pool.instances.values():
                if instance.server is not None:
                    instance.server.stop(grace_s=2)
            pool.instances.clear()
            revision.update({"failed": True, "port": None, "instances": []})
            self._revision_never_started(revision)
        else:
            delay = pool.start_failed(time.monotonic())
            pool.crashed = True
            revision["message"] = f"Restart {pool.failures} failed; next attempt in {delay:g} s. {message}"
        self.store.save()

    def _revision_never_started(self, revision: dict[str, Any]) -> None:
        """The service of a revision that could not start says so, and keeps serving as before it was made."""
        name = revision["object"]["metadata"]["name"]
        entry = self.store.services.get(revision["service"])
        if entry is None:
            return
        if self.routes.latest(revision["service"], ready=False) == name:
            entry["error"] = f"Revision '{name}' is not ready and cannot serve traffic. {revision['message']}"
        targets = entry["object"]["spec"]["traffic"]
        if any(t.get("revisionName") == name and t.get("percent") for t in targets):
            entry["object"]["spec"]["traffic"] = entry.get("previous_traffic") or [{"percent": 100,
                                                                                    "latestRevision": True}]


def _answers_as(server: Server, name: str) -> bool:
    """Whether the server's health answer names revision `name` (what proves a recorded server is that revision)."""
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
            return json.loads(response.read()).get("revision") == name
    except (OSError, ValueError, AttributeError):
        return False
