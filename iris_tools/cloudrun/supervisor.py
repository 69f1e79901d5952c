"""Supervision: the revision processes and Envoy brought to match the stored state, and kept so.

One reconcile loop (`reconcile`), run after every change and every RECONCILE_INTERVAL_S by `run`, sets
what is stored (desired) against what runs (observed), as Knative Serving's reconcilers do:
- a revision that should run (it carries traffic or a tag, or is its service's latest) and does not is
  started in a thread of its own. One that dies is started again with capped exponential back-off for
  as long as it should run; only a revision whose first start failed is failed for good (deploy a new
  one), as on Cloud Run. A revision keeps its port across restarts, so Envoy's endpoint stays right.
- an Envoy that dies is started again, on the configuration files it had;
- Envoy is fed the routes whenever they change, and confirms them.
Under the state lock only the in-memory store is read and written: process starts, readiness waits and
Envoy's applies happen outside it, so reads and traffic changes answer while a revision starts.
Lock order: the apply lock, then the state lock; never the other way round.
"""

from __future__ import annotations

import threading
import time
import traceback
import urllib.request
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.cloudrun.envoy import Backend, Envoy, Route
from iris_tools.cloudrun.digest import ImageNotRunnable
from iris_tools.cloudrun.resources import DEPLOYING, model_of_image
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store
from iris_tools.local.servers import Server, ServerError, adopt, free_port, port_is_free
from iris_tools.local.versions import start_version

STARTUP_TIMEOUT_S = 60.0
RECONCILE_INTERVAL_S = 0.5
RESTART_BASE_S = 0.5  # the wait after a second crash in a row; it doubles with each further one
RESTART_CAP_S = 8.0
STABLE_S = 10.0  # a revision that ran this long before it died starts again at once
DEFAULT_CONCURRENCY = 80  # Cloud Run's defaults for containerConcurrency and timeoutSeconds
MAX_CONCURRENCY = 1000
DEFAULT_TIMEOUT_S = 300

# Why a revision is not ready, as Cloud Run's Revision conditions name it.
CONTAINER_MISSING = "ContainerMissing"
HEALTH_CHECK_FAILED = "HealthCheckContainerError"
CONTAINER_EXITED = "ContainerExited"


@dataclass
class Observed:
    """What a revision is doing now: one of serving, starting, restarting, stopped (scaled to zero), failed."""

    state: str
    message: str = ""
    reason: str = ""


@dataclass
class _Restarts:
    failures: int = 0  # starts in a row that failed, or crashes soon after a start
    next_at: float = 0.0  # time.monotonic() of the next attempt
    started_at: float = 0.0


class Supervisor:
    def __init__(self, store: Store, directory: Path, routes: Routes, lock: threading.RLock) -> None:
        self.store = store
        self.directory = directory
        self.routes = routes
        self.lock = lock  # the state lock
        self._apply_lock = threading.Lock()
        self.envoy: Envoy | None = None
        self.servers: dict[str, Server] = {}  # revision name -> a server that answered as that revision
        self._starting: dict[str, threading.Thread] = {}
        self._restarts: dict[str, _Restarts] = {}
        self._applied: tuple[list[Route], dict[str, Backend]] | None = None
        self.transitions: dict[str, dict[str, list[str]]] = {}  # "services/<name>" -> condition -> [status, time]

    # ------------------------------------------------------------ lifecycle

    def boot(self, wait_s: float = STARTUP_TIMEOUT_S) -> None:
        """Adopt (or start) Envoy, adopt every revision that proves it is itself, start the rest that should
        run (concurrently), and wait up to `wait_s` for those starts."""
        with self.lock:
            self.envoy = Envoy.adopt(self.directory / "envoy", self.store.data.get("envoy"))
            for name, revision in self.store.revisions.items():
                if revision.get("server"):
                    server = adopt(revision["server"])
                    if server.alive() and _answers_as(server, name):
                        self.servers[name] = server
        self.reconcile()
        deadline = time.monotonic() + wait_s
        for thread in list(self._starting.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        self.reconcile()

    def run(self, stopping: threading.Event) -> None:
        """Reconcile every RECONCILE_INTERVAL_S until `stopping` is set; a fault is logged, never fatal."""
        while not stopping.wait(RECONCILE_INTERVAL_S):
            try:
                self.reconcile()
            except Exception:  # the loop is what heals: it must outlive any one fault
                traceback.print_exc()

    def stop_all(self) -> None:
        """Stop every process the state records (revisions, Envoy); keep the state itself."""
        with self.lock:
            for revision in self.store.revisions.values():
                if revision.get("server"):
                    adopt(revision["server"]).stop(grace_s=5)
                revision["server"] = None
            if self.store.data.get("envoy"):
                adopt(self.store.data["envoy"]).stop(grace_s=5)
                self.store.data["envoy"] = None
            self.store.save()

    # ------------------------------------------------------------ the loop

    def reconcile(self) -> None:
        """Revisions that should run are running or starting; Envoy runs and serves the stored traffic.
        Never call it holding the state lock."""
        gone = []
        with self.lock:
            now = time.monotonic()
            changed = False
            for name, server in list(self.servers.items()):
                if name not in self.store.revisions:
                    gone.append(self.servers.pop(name))
                elif not server.alive():
                    self.servers.pop(name)
                    self._crashed(name, server, now)
                    changed = True
            for name in sorted(self.wanted()):
                revision = self.store.revisions[name]
                if not revision.get("port"):
                    revision["port"] = self._port(revision)  # routed to (and held for) from now on
                    changed = True
                restarts = self._restarts.get(name)
                if name in self.servers or name in self._starting or (restarts and now < restarts.next_at):
                    continue
                thread = threading.Thread(target=self._start, args=(name,), name=f"start-{name}", daemon=True)
                self._starting[name] = thread
                thread.start()
            if changed:
                self.store.save()
        for server in gone:
            server.stop(grace_s=5)
        self.apply()

    def wanted(self) -> set[str]:
        """Revisions that should run: each that carries traffic or a tag, each service's latest, each not yet
        deployed; never one whose first start failed. The rest are scaled to zero, as Cloud Run does with no traffic."""
        names = set()
        for service in self.store.services:
            for target in self.routes.resolved_traffic(service):
                if target.get("revisionName") and (target.get("percent") or target.get("tag")):
                    names.add(target["revisionName"])
            latest = self.routes.latest(service, ready=False)
            if latest:
                names.add(latest)
        # A revision still deploying (its start cut short by a killed control plane) is resolved: it becomes
        # ready or failed.
        names |= {name for name, revision in self.store.revisions.items() if not revision.get("ready")}
        return {name for name in names if name in self.store.revisions and not self.store.revisions[name].get("failed")}

    def observe(self, name: str) -> Observed:
        """What revision `name` is doing, read under the state lock."""
        revision = self.store.revisions[name]
        if revision.get("failed"):
            return Observed("failed", revision.get("message", ""), revision.get("reason") or CONTAINER_MISSING)
        if name in self.servers:
            return Observed("serving")
        if name in self._starting:
            return Observed("starting", revision.get("message") or DEPLOYING)
        if name in self._restarts and name in self.wanted():
            return Observed("restarting", revision.get("message", ""), revision.get("reason") or CONTAINER_EXITED)
        return Observed("stopped")

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
        """Every revision that has a port: where it listens, and what its template asks of the data plane."""
        backends = {}
        for name, revision in self.store.revisions.items():
            if revision.get("port") and not revision.get("failed"):
                spec = revision["object"]["spec"]
                concurrency = spec.get("containerConcurrency")
                timeout = spec.get("timeoutSeconds")
                backends[name] = Backend(
                    revision["port"], MAX_CONCURRENCY if concurrency == 0 else int(concurrency or DEFAULT_CONCURRENCY),
                    int(timeout or DEFAULT_TIMEOUT_S))
        return backends

    # ------------------------------------------------------------ one revision

    def _crashed(self, name: str, server: Server, now: float) -> None:
        restarts = self._restarts.setdefault(name, _Restarts())
        quick = now - restarts.started_at < STABLE_S
        restarts.failures = restarts.failures + 1 if quick else 0
        restarts.next_at = now + self._delay(restarts.failures)
        revision = self.store.revisions[name]
        revision.update({"message": f"The container exited; starting it again. Its last lines:\n{server.logs(5)}",
                         "reason": CONTAINER_EXITED})

    @staticmethod
    def _delay(failures: int) -> float:
        return 0.0 if failures == 0 else min(RESTART_CAP_S, RESTART_BASE_S * 2 ** (failures - 1))

    def _start(self, name: str) -> None:
        """Start revision `name` and wait until it is ready (this thread only); record what happened."""
        server = None
        try:
            with self.lock:
                revision = self.store.revisions.get(name)
                if revision is None:
                    return
                plan = self._plan(name, revision)
                previous = revision.get("server")
                if isinstance(plan, str):
                    self._start_failed(name, plan, CONTAINER_MISSING)
                    return
                revision["port"] = plan["host_port"]
            if previous:
                adopt(previous).stop(grace_s=2)  # what is left of the last one (an exited container); only if ours
            server = start_version(plan["model"], plan["host_port"], plan["runtime"], env=plan["environment"],
                                   log=plan["log"], container_name=plan["container"], image=plan["image"],
                                   as_in_image=True)
            with self.lock:
                revision["server"] = server.record()
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
                message = str(exc) if server is None else (
                    f"The user-provided container failed to start and listen on the port defined provided by the "
                    f"PORT={plan['port']} environment variable. {exc}")
                self._start_failed(name, message, CONTAINER_MISSING if server is None else HEALTH_CHECK_FAILED)
            return
        finally:
            with self.lock:
                self._starting.pop(name, None)
        with self.lock:
            if name not in self.store.revisions:  # deleted while it started
                server.stop(grace_s=2)
                return
            self.servers[name] = server
            self._restarts.setdefault(name, _Restarts()).started_at = time.monotonic()
            revision.update({"ready": True, "message": "", "reason": ""})
            self.store.save()
        self.apply()

    def _plan(self, name: str, revision: dict[str, Any]) -> dict[str, Any] | str:
        """How to start the revision, or why it cannot start."""
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
        host_port = self._port(revision)
        port_spec = (container.get("ports") or [{}])[0].get("containerPort")
        port = (int(port_spec) if port_spec else 8080) if runtime == "docker" else host_port
        environment = {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}
        environment.update({"PORT": str(port), "K_SERVICE": revision["service"], "K_REVISION": name,
                            "K_CONFIGURATION": revision["service"]})
        probe = (container.get("startupProbe") or {}).get("httpGet", {}).get("path")
        return {"model": model, "image": image, "runtime": runtime, "host_port": host_port, "port": port,
                "environment": environment, "probe": probe, "log": self.directory / "logs" / f"{name}.log",
                "container": f"cloudrun_{self.store.instance_id()}_{name}"}

    def _port(self, revision: dict[str, Any]) -> int:
        """The revision's port, kept across restarts; a new one only when another process holds it. Never a
        port a service, a tag or another revision has."""
        taken = {port for service in self.store.services.values() for port in service.get("ports", {}).values()}
        taken |= {r.get("port") for r in self.store.revisions.values() if r is not revision}
        kept = revision.get("port")
        if kept and kept not in taken and port_is_free(kept):
            return kept
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def _start_failed(self, name: str, message: str, reason: str) -> None:
        """Under the state lock. A revision that never served is failed for good (as a deploy that fails on
        Cloud Run); one that served before is tried again after a back-off."""
        revision = self.store.revisions[name]
        revision.update({"server": None, "message": message, "reason": reason})
        if not revision.get("ready"):
            revision.update({"failed": True, "port": None})
            self._revision_never_started(revision)
        else:
            restarts = self._restarts.setdefault(name, _Restarts())
            restarts.failures += 1
            delay = self._delay(restarts.failures)
            restarts.next_at = time.monotonic() + delay
            revision["message"] = f"Restart {restarts.failures} failed; next attempt in {delay:g} s. {message}"
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
