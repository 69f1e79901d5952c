"""Supervision: the revision processes and Envoy brought to match the stored state, and kept so.

`reconcile` is the one idempotent step: revisions that should run are started (through the
server-lifecycle module) and waited for, Envoy is fed the routes and confirms it applied them, and
what was observed (server, port, ready, message) is stored. Running it twice changes nothing; after
a crash or a restart, running it again repairs (as Knative Serving's reconcilers do).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from iris_tools import FUNCTIONS_DIR
from iris_tools.cloudrun.envoy import Envoy
from iris_tools.cloudrun.resources import model_of_image
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store
from iris_tools.servers import ServerError, adopt, free_port, port_is_free
from iris_tools.versions import start_version

STARTUP_TIMEOUT_S = 60.0


class Supervisor:
    def __init__(self, store: Store, directory: Path, routes: Routes, lock: threading.RLock) -> None:
        self.store = store
        self.directory = directory
        self.routes = routes
        self.lock = lock
        self.envoy: Envoy | None = None
        self.servers: dict[str, Any] = {}  # revision name -> Server (adopted or started)

    def boot(self) -> None:
        """Adopt (or start) Envoy and every revision the state records, then reconcile."""
        with self.lock:
            self.envoy = Envoy.adopt(self.directory / "envoy", self.store.data.get("envoy"))
            if self.envoy is None:
                self.envoy = Envoy(self.directory / "envoy")
                self.envoy.start()
            self.store.data["envoy"] = self.envoy.record()
            for name, revision in self.store.revisions.items():
                if revision.get("server"):
                    server = adopt(revision["server"])
                    if server.alive():
                        self.servers[name] = server
            self.reconcile()

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

    def reconcile(self) -> None:
        """Revisions that should run are running and ready; Envoy serves the stored traffic."""
        with self.lock:
            for name, revision in self.store.revisions.items():
                server = self.servers.get(name)
                if server is not None and server.alive():
                    continue
                if revision.get("failed"):
                    continue  # a revision that could not start is not retried: deploy a new one
                self._start_revision(name, revision)
            self._apply_routes()
            self.store.save()

    def restart_crashed(self) -> list[str]:
        """Revisions whose process died are started again, as Cloud Run replaces a failed instance."""
        restarted = []
        with self.lock:
            for name, server in list(self.servers.items()):
                if not server.alive() and name in self.store.revisions:
                    self.servers.pop(name)
                    restarted.append(name)
            if restarted:
                self.reconcile()
        return restarted

    def _start_revision(self, name: str, revision: dict[str, Any]) -> None:
        spec = revision["object"]["spec"]
        container = spec["containers"][0]
        image = container["image"]
        model = model_of_image(image)
        service = revision["service"]
        port_spec = (container.get("ports") or [{}])[0].get("containerPort")
        runtime = self.store.data["runtime"]
        environment = {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}
        if model is None or not (FUNCTIONS_DIR / model / "main.py").exists():
            self._revision_failed(revision, f"Image '{image}' not found: no model folder functions/{model or '?'}/ "
                                  f"with a main.py (images are iris:<model>, one per folder of functions/)")
            return
        # A container listens on its containerPort inside its own network, published on a free loopback
        # port. Processes share this machine's ports, so a process revision listens on a free one, and
        # PORT tells it which (the contract is "listen on $PORT"; two revisions may both say 8080).
        host_port = free_port()
        port = (int(port_spec) if port_spec else 8080) if runtime == "docker" else host_port
        environment.update({"PORT": str(port), "K_SERVICE": service, "K_REVISION": name,
                            "K_CONFIGURATION": service})
        log = self.directory / "logs" / f"{name}.log"
        try:
            server = start_version(model, host_port, runtime, env=environment, log=log,
                                   container_name=f"cloudrun_{name}", image=image, as_in_image=True)
        except ServerError as exc:
            self._revision_failed(revision, str(exc))
            return
        revision["server"] = server.record()
        revision["port"] = host_port
        self.store.save()  # recorded before waiting: a crash now still knows the process to stop
        probe = ((spec.get("containers") or [{}])[0].get("startupProbe") or {}).get("httpGet", {}).get("path")
        try:
            if probe:
                server.wait_ready(probe, timeout=STARTUP_TIMEOUT_S)
            else:
                server.wait_ready(ready=lambda: not port_is_free(host_port), timeout=STARTUP_TIMEOUT_S)
        except ServerError as exc:
            server.stop(grace_s=2)
            revision["server"] = None
            self._revision_failed(revision, f"The user-provided container failed to start and listen on the port "
                                  f"defined provided by the PORT={port} environment variable. {exc}")
            return
        self.servers[name] = server
        revision["ready"] = True
        revision["message"] = ""

    @staticmethod
    def _revision_failed(revision: dict[str, Any], message: str) -> None:
        revision.update({"ready": False, "failed": True, "message": message, "server": None, "port": None})

    def _apply_routes(self) -> None:
        endpoints = {name: revision["port"] for name, revision in self.store.revisions.items()
                     if revision.get("ready") and revision.get("port") and name in self.servers}
        self.envoy.apply(self.routes.table(endpoints), endpoints)
        for name in list(self.servers):
            if name not in self.store.revisions:
                self.servers.pop(name).stop(grace_s=5)
