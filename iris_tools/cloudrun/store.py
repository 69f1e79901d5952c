"""The local Cloud Run's stored state: one JSON file, written atomically after every change.

    {"project", "region", "runtime", "api_port", "envoy": <server record>,
     "services":  {name: {"object": <Knative Service as the API keeps it>, "ports": {"": port, tag: port},
                          "counter": n, "iam": <policy>, "error": <last failure or null>}},
     "revisions": {name: {"object": <Knative Revision>, "service": name, "server": <server record or null>,
                          "ready": bool, "message": str, "port": int or null}}}

A kill at any moment leaves the old file or the new one, never a torn one (temp file + rename).
The desired state (`object.spec`) is what the API stores; `server`, `ready` and `message` are what
the reconciler observed, and `status` is computed from both whenever an object is read.
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

from iris_tools.cloudrun.digest import Images
from iris_tools.local.state import write_atomically

STATE_FILE = "state.json"


class Store:
    def __init__(self, directory: Path, project: str, region: str, runtime: str) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.data: dict[str, Any] = {"project": project, "region": region, "runtime": runtime, "api_port": None,
                                     "envoy": None, "services": {}, "revisions": {}, "resource_version": 0}

    @classmethod
    def load(cls, directory: Path, project: str, region: str, runtime: str) -> "Store":
        store = cls(directory, project, region, runtime)
        if store.path.exists():
            saved = json.loads(store.path.read_text())
            store.data.update(saved)
            # Settings given at start-up win over the saved ones; services keep their own.
            store.data.update({"project": project, "region": region, "runtime": runtime})
        return store

    def save(self) -> None:
        write_atomically(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def images(self) -> Images:
        """Images as this local Cloud Run names and runs them; the digests it reported are kept in the state."""
        return Images(self.data.setdefault("digests", {}), self.data["runtime"])

    def instance_id(self) -> str:
        """A short id of this local Cloud Run, made once: it keeps its container names apart from another's."""
        if not self.data.get("instance_id"):
            self.data["instance_id"] = secrets.token_hex(4)
        return self.data["instance_id"]

    def next_resource_version(self) -> str:
        self.data["resource_version"] = int(self.data.get("resource_version", 0)) + 1
        return str(self.data["resource_version"])

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.data["services"]

    @property
    def revisions(self) -> dict[str, dict[str, Any]]:
        return self.data["revisions"]

    def revisions_of(self, service: str) -> list[dict[str, Any]]:
        found = [r for r in self.revisions.values() if r["service"] == service]
        return sorted(found, key=lambda r: (r["object"]["metadata"]["creationTimestamp"],
                                            r["object"]["metadata"]["name"]))

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.data = snapshot
