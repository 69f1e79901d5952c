"""Status as the Admin API reports it: a Service's or Revision's stored object with its `status` computed
from what is observed at the moment of the read (is each revision that carries traffic serving? is the
data plane up?), never from a stored "ready" string. Each condition's reason and message name the
revision at fault; its lastTransitionTime changes only when its status does.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from iris_tools.environment import value
from iris_tools.cloudrun.resources import URLS_ANNOTATION, condition
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store
from iris_tools.cloudrun.supervisor import Supervisor
from iris_tools.google.timestamps import rfc3339

Verdict = tuple[bool | None, str, str]  # status (None: Unknown), reason, message


def _stamped(seen: dict[str, list[str]], kind: str, verdict: Verdict) -> dict[str, Any]:
    """The condition, with the time its status last changed (`seen`: the object's last statuses and times,
    kept in memory by the supervisor: observed state, not stored state)."""
    ok, reason, message = verdict
    status = "Unknown" if ok is None else str(ok)
    if seen.get(kind, [None])[0] != status:
        seen[kind] = [status, rfc3339(time.time())]
    found = condition(kind, ok, message, reason)
    found["lastTransitionTime"] = seen[kind][1]
    return found


def _routes_verdict(store: Store, routes: Routes, supervisor: Supervisor, name: str) -> Verdict:
    if not supervisor.envoy_alive():
        return False, "DataPlaneDown", "The data plane (Envoy) is not running; it is being started again."
    unknown = None
    for target in routes.resolved_traffic(name):
        revision, percent = target.get("revisionName"), target.get("percent")
        if not revision or not percent:
            continue
        observed = supervisor.observe(revision)
        if observed.state in ("serving", "activating", "stopped"):  # at zero, or scaling from it: requests wait
            continue
        if observed.state == "starting":
            unknown = unknown or (None, "RevisionStarting", f"Revision '{revision}' ({percent}% of the traffic) is "
                                                             f"starting; its requests wait for it.")
            continue
        return False, "RevisionNotServing", (
            f"Revision '{revision}' carries {percent}% of the traffic and is not serving ({observed.state}): "
            f"{observed.message.strip() or observed.reason} Its requests are held for up to {value('CLOUDRUN_HOLD_S'):g} s, then "
            f"answered 503; none are sent to another revision.")
    return unknown or (True, "", "")


def _configurations_verdict(store: Store, routes: Routes, supervisor: Supervisor, name: str) -> Verdict:
    error = store.services[name].get("error")
    if error:
        return False, "RevisionFailed", error
    latest = routes.latest(name, ready=False)
    if latest and supervisor.observe(latest).state in ("starting", "stopped") and \
            not store.revisions[latest].get("ready"):
        return None, "Deploying", f"Revision '{latest}' is being deployed."
    return True, "", ""


def service_document(store: Store, routes: Routes, supervisor: Supervisor, name: str) -> dict[str, Any]:
    entry = store.services[name]
    document = copy.deepcopy(entry["object"])
    url = routes.url(name)
    document["metadata"].setdefault("annotations", {})[URLS_ANNOTATION] = json.dumps([url])
    traffic = []
    for target in routes.resolved_traffic(name):
        if target.get("tag"):
            target["url"] = routes.url(name, target["tag"])
        traffic.append(target)
    configurations = _configurations_verdict(store, routes, supervisor, name)
    routes_ready = _routes_verdict(store, routes, supervisor, name)
    seen = supervisor.transitions.setdefault(f"services/{name}", {})
    ready = next((v for v in (configurations, routes_ready) if v[0] is False),
                 next((v for v in (configurations, routes_ready) if v[0] is None), (True, "", "")))
    document["status"] = {
        "observedGeneration": document["metadata"]["generation"],
        "conditions": [_stamped(seen, "Ready", ready), _stamped(seen, "ConfigurationsReady", configurations),
                       _stamped(seen, "RoutesReady", routes_ready)],
        "latestCreatedRevisionName": routes.latest(name, ready=False),
        "latestReadyRevisionName": routes.latest(name, ready=True),
        "url": url, "address": {"url": url}, "traffic": traffic,
    }
    return document


def revision_document(store: Store, routes: Routes, supervisor: Supervisor, name: str) -> dict[str, Any]:
    entry = store.revisions[name]
    document = copy.deepcopy(entry["object"])
    observed = supervisor.observe(name)
    if observed.state in ("serving", "activating", "stopped") and entry.get("ready"):
        ready: Verdict = (True, "", "")
    elif observed.state == "starting":
        ready = (None, "Deploying" if not entry.get("ready") else "Starting", observed.message)
    else:
        ready = (False, observed.reason, observed.message)
    serving = any(t.get("revisionName") == name and t.get("percent") for t in routes.resolved_traffic(entry["service"]))
    seen = supervisor.transitions.setdefault(f"revisions/{name}", {})
    document["status"] = {
        "observedGeneration": document["metadata"].get("generation", 1),
        "conditions": [_stamped(seen, "Ready", ready), _stamped(seen, "ContainerHealthy", ready),
                       _stamped(seen, "Active", (serving, "" if serving else "Reserve",
                                                  "" if serving else "Revision is not serving traffic."))],
        "logUrl": str(store.directory / "logs" / f"{name}.log"),
    }
    if entry.get("digest"):
        document["status"]["imageDigest"] = entry["digest"]
    return document
