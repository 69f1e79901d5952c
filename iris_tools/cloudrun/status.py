"""Status as the Admin API reports it: a Service's or Revision's stored object with its `status` computed."""

from __future__ import annotations

import copy
import json
from typing import Any

from iris_tools.cloudrun.resources import URLS_ANNOTATION, condition
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store


def service_document(store: Store, routes: Routes, name: str) -> dict[str, Any]:
    entry = store.services[name]
    document = copy.deepcopy(entry["object"])
    url = routes.url(name)
    document["metadata"].setdefault("annotations", {})[URLS_ANNOTATION] = json.dumps([url])
    traffic = []
    for target in routes.resolved_traffic(name):
        if target.get("tag"):
            target["url"] = routes.url(name, target["tag"])
        traffic.append(target)
    error = entry.get("error")
    document["status"] = {
        "observedGeneration": document["metadata"]["generation"],
        "conditions": [condition("Ready", error is None, error or "", "RevisionFailed" if error else ""),
                       condition("ConfigurationsReady", error is None, error or ""),
                       condition("RoutesReady", True)],
        "latestCreatedRevisionName": routes.latest(name, ready=False),
        "latestReadyRevisionName": routes.latest(name, ready=True),
        "url": url, "address": {"url": url}, "traffic": traffic,
    }
    return document


def revision_document(store: Store, routes: Routes, name: str) -> dict[str, Any]:
    entry = store.revisions[name]
    document = copy.deepcopy(entry["object"])
    ok = bool(entry.get("ready"))
    message = entry.get("message", "")
    serving = any(t.get("revisionName") == name and t.get("percent") for t in routes.resolved_traffic(entry["service"]))
    document["status"] = {
        "observedGeneration": 1,
        "conditions": [condition("Ready", ok, message, "" if ok else "ContainerMissing"),
                       condition("ContainerHealthy", ok, message),
                       condition("Active", serving, "" if serving else "Revision is not serving traffic.",
                                 "" if serving else "Reserve")],
        "imageDigest": document["spec"]["containers"][0]["image"],
        "logUrl": str(store.directory / "logs" / f"{name}.log"),
    }
    return document
