"""What the data plane should route, from the stored traffic: each service's and tag's port, its weights, its token.

A service listens on a loopback port of its own (and one per tag), kept in the state so URLs stay
the same across restarts. `latestRevision: true` resolves to the newest ready revision.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from iris_tools.cloudrun.envoy import Route
from iris_tools.cloudrun.resources import is_public
from iris_tools.cloudrun.store import Store
from iris_tools.google.targets import TOKEN_FILE
from iris_tools.local.servers import HOST, free_port


class Routes:
    def __init__(self, store: Store, directory: Path) -> None:
        self.store = store
        self.directory = directory

    def token(self) -> str:
        """The bearer token a local caller sends to a private service (made once, kept with the state)."""
        path = self.directory / TOKEN_FILE
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def port(self, entry: dict[str, Any], tag: str) -> int:
        """The service's port ("" tag) or a tag's, chosen once and kept; never one another service holds."""
        ports = entry.setdefault("ports", {})
        if tag not in ports:
            taken = {port for service in self.store.services.values() for port in service.get("ports", {}).values()}
            taken |= {revision.get("port") for revision in self.store.revisions.values()}
            taken |= {instance.get("port") for revision in self.store.revisions.values()
                      for instance in revision.get("instances") or []}
            port = free_port()
            while port in taken:
                port = free_port()
            ports[tag] = port
        return ports[tag]

    def url(self, service: str, tag: str = "") -> str:
        return f"http://{HOST}:{self.port(self.store.services[service], tag)}"

    def latest(self, service: str, ready: bool) -> str | None:
        found = [r for r in self.store.revisions_of(service) if r.get("ready") or not ready]
        return found[-1]["object"]["metadata"]["name"] if found else None

    def resolved_traffic(self, service: str) -> list[dict[str, Any]]:
        """The service's traffic targets with `latestRevision` resolved to a revision name."""
        entry = self.store.services[service]
        latest_ready = self.latest(service, ready=True)
        resolved = []
        for target in entry["object"]["spec"].get("traffic", []):
            status = {key: value for key, value in target.items() if key != "configurationName"}
            if target.get("latestRevision"):
                status["revisionName"] = latest_ready
            resolved.append(status)
        return resolved

    def table(self, backends: set[str]) -> list[Route]:
        """Envoy's routes: one per service and one per tag. Every share goes to the revision it names, whether
        or not that revision runs now (`backends`: those with a port): Envoy holds what it cannot deliver."""
        routes = []
        for service_name, entry in sorted(self.store.services.items()):
            token = None if is_public(entry) else self.token()
            weights: dict[str, int] = {}
            for target in self.resolved_traffic(service_name):
                revision = target.get("revisionName")
                if revision and target.get("percent"):
                    weights[revision] = weights.get(revision, 0) + int(target["percent"])
                if target.get("tag") and revision in backends:
                    routes.append(Route(f"tag-{service_name}-{target['tag']}", self.port(entry, target["tag"]),
                                        {revision: 100}, service_name, token))
            routes.append(Route(f"svc-{service_name}", self.port(entry, ""), weights, service_name, token))
        return routes
