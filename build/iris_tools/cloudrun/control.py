"""The control plane: Knative Services and Revisions stored, validated and reconciled.

The API (`api.py`) calls these methods with decoded JSON and sends back what they return.
Every mutation runs under one lock: validate, store the desired state, then `reconcile`,
the one idempotent step that brings the world to match it (revision processes started or
stopped through the server-lifecycle module, Envoy's files written and confirmed applied)
and records what it observed. Running `reconcile` twice changes nothing; after a crash or a
restart, running it again repairs (as Knative Serving's reconcilers do).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import secrets
import string
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from iris_tools import FUNCTIONS_DIR
from iris_tools.cloudrun import TOKEN_FILE
from iris_tools.cloudrun.envoy import Envoy, Route
from iris_tools.cloudrun.errors import AlreadyExists, Aborted, FailedPrecondition, InvalidArgument, NotFound
from iris_tools.cloudrun.metrics import rfc3339
from iris_tools.cloudrun.names import check_revision_name, check_service_name, check_tag
from iris_tools.cloudrun.store import Store
from iris_tools.servers import HOST, ServerError, adopt, free_port, port_is_free
from iris_tools.versions import start_version

API_VERSION = "serving.knative.dev/v1"
SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
NONCE_LABEL = "client.knative.dev/nonce"
URLS_ANNOTATION = "run.googleapis.com/urls"
LOCATION_LABEL = "cloud.googleapis.com/location"
STARTUP_TIMEOUT_S = 60.0
INVOKER_ROLE = "roles/run.invoker"
SERVICE_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}


def now() -> str:
    return rfc3339(time.time())


def condition(kind: str, ok: bool | None, message: str = "", reason: str = "") -> dict[str, Any]:
    entry = {"type": kind, "status": "Unknown" if ok is None else ("True" if ok else "False"),
             "lastTransitionTime": now()}
    if message:
        entry["message"] = message
    if reason:
        entry["reason"] = reason
    return entry


def model_of_image(image: str) -> str | None:
    """`iris:svc`, `us-docker.pkg.dev/p/r/iris:svc` or `iris:svc@sha256:...` -> `svc`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    name, sep, tag = last.partition(":")
    return tag if sep and tag else None


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument.field(field, f"expected an object, got {type(value).__name__}")
    return value


class LocalCloudRun:
    def __init__(self, directory: Path, project: str, region: str, runtime: str = "process") -> None:
        self.directory = directory
        self.store = Store.load(directory, project, region, runtime)
        self.lock = threading.RLock()
        self.envoy: Envoy | None = None
        self.servers: dict[str, Any] = {}  # revision name -> Server (adopted or started)

    @property
    def project(self) -> str:
        return self.store.data["project"]

    @property
    def region(self) -> str:
        return self.store.data["region"]

    # ------------------------------------------------------------ start-up and shut-down

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
            for name, revision in self.store.revisions.items():
                if revision.get("server"):
                    adopt(revision["server"]).stop(grace_s=5)
                revision["server"] = None
            if self.store.data.get("envoy"):
                adopt(self.store.data["envoy"]).stop(grace_s=5)
                self.store.data["envoy"] = None
            self.store.save()

    # ------------------------------------------------------------ reconcile

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

    def _routes(self) -> tuple[list[Route], dict[str, int]]:
        routes, endpoints = [], {}
        for name, revision in self.store.revisions.items():
            if revision.get("ready") and revision.get("port") and name in self.servers:
                endpoints[name] = revision["port"]
        for service_name, entry in sorted(self.store.services.items()):
            token = None if self._public(entry) else self.token()
            weights: dict[str, int] = {}
            for target in self._resolved_traffic(service_name):
                revision = target.get("revisionName")
                if revision in endpoints and target.get("percent"):
                    weights[revision] = weights.get(revision, 0) + int(target["percent"])
                if target.get("tag") and revision in endpoints:
                    routes.append(Route(f"tag-{service_name}-{target['tag']}", self._port(entry, target["tag"]),
                                        {revision: 100}, service_name, token))
            routes.append(Route(f"svc-{service_name}", self._port(entry, ""), weights, service_name, token))
        return routes, endpoints

    @staticmethod
    def _public(entry: dict[str, Any]) -> bool:
        return any(binding.get("role") == INVOKER_ROLE and "allUsers" in binding.get("members", [])
                   for binding in entry.get("iam", {}).get("bindings", []))

    def token(self) -> str:
        """The bearer token a local caller sends to a private service (made once, kept with the state)."""
        path = self.directory / TOKEN_FILE
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _apply_routes(self) -> None:
        routes, endpoints = self._routes()
        self.envoy.apply(routes, endpoints)
        for name in list(self.servers):
            if name not in self.store.revisions:
                self.servers.pop(name).stop(grace_s=5)

    def _port(self, entry: dict[str, Any], tag: str) -> int:
        ports = entry.setdefault("ports", {})
        if tag not in ports:
            taken = {port for service in self.store.services.values() for port in service.get("ports", {}).values()}
            port = free_port()
            while port in taken:
                port = free_port()
            ports[tag] = port
        return ports[tag]

    # ------------------------------------------------------------ reading

    def url(self, service: str, tag: str = "") -> str:
        return f"http://{HOST}:{self._port(self.store.services[service], tag)}"

    def _resolved_traffic(self, service: str) -> list[dict[str, Any]]:
        entry = self.store.services[service]
        latest_ready = self._latest(service, ready=True)
        resolved = []
        for target in entry["object"]["spec"].get("traffic", []):
            status = {key: value for key, value in target.items() if key != "configurationName"}
            if target.get("latestRevision"):
                status["revisionName"] = latest_ready
            resolved.append(status)
        return resolved

    def _latest(self, service: str, ready: bool) -> str | None:
        found = [r for r in self.store.revisions_of(service) if r.get("ready") or not ready]
        return found[-1]["object"]["metadata"]["name"] if found else None

    def _not_found(self, kind: str, name: str) -> NotFound:
        return NotFound(f"Resource '{name}' of kind '{kind}' in region '{self.region}' in project "
                        f"'{self.project}' does not exist.")

    def service(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                raise self._not_found("SERVICE", name)
            entry = self.store.services[name]
            document = copy.deepcopy(entry["object"])
            url = self.url(name)
            document["metadata"].setdefault("annotations", {})[URLS_ANNOTATION] = json.dumps([url])
            traffic = []
            for target in self._resolved_traffic(name):
                if target.get("tag"):
                    target["url"] = self.url(name, target["tag"])
                traffic.append(target)
            error = entry.get("error")
            generation = document["metadata"]["generation"]
            document["status"] = {
                "observedGeneration": generation,
                "conditions": [condition("Ready", error is None, error or "", "RevisionFailed" if error else ""),
                               condition("ConfigurationsReady", error is None, error or ""),
                               condition("RoutesReady", True)],
                "latestCreatedRevisionName": self._latest(name, ready=False),
                "latestReadyRevisionName": self._latest(name, ready=True),
                "url": url, "address": {"url": url}, "traffic": traffic,
            }
            return document

    def services(self) -> dict[str, Any]:
        with self.lock:
            return {"apiVersion": API_VERSION, "kind": "ServiceList", "metadata": {},
                    "items": [self.service(name) for name in sorted(self.store.services)]}

    def revision(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.revisions:
                raise self._not_found("REVISION", name)
            entry = self.store.revisions[name]
            document = copy.deepcopy(entry["object"])
            ok = bool(entry.get("ready"))
            message = entry.get("message", "")
            serving = any(t.get("revisionName") == name and t.get("percent")
                          for t in self._resolved_traffic(entry["service"]))
            document["status"] = {
                "observedGeneration": 1,
                "conditions": [condition("Ready", ok, message, "" if ok else "ContainerMissing"),
                               condition("ContainerHealthy", ok, message),
                               condition("Active", serving, "" if serving else "Revision is not serving traffic.",
                                         "" if serving else "Reserve")],
                "imageDigest": document["spec"]["containers"][0]["image"],
                "logUrl": str(self.directory / "logs" / f"{name}.log"),
            }
            return document

    def revisions(self, service: str | None = None) -> dict[str, Any]:
        with self.lock:
            names = [r["object"]["metadata"]["name"] for r in self.store.revisions.values()
                     if service is None or r["service"] == service]
            return {"apiVersion": API_VERSION, "kind": "RevisionList", "metadata": {},
                    "items": [self.revision(name) for name in sorted(names, reverse=True)]}

    # ------------------------------------------------------------ writing

    def create_service(self, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            document = self._check_service_body(body)
            name = check_service_name(document["metadata"].get("name"))
            if name in self.store.services:
                raise AlreadyExists(f"Resource '{name}' already exists.")
            self._check_namespace(document, namespace)
            snapshot = self.store.snapshot()
            metadata = document["metadata"]
            metadata.update({"namespace": self.project, "generation": 1, "uid": str(uuid.uuid4()),
                             "creationTimestamp": now(), "resourceVersion": self.store.next_resource_version()})
            metadata.setdefault("labels", {})[LOCATION_LABEL] = self.region
            metadata.setdefault("annotations", {})
            spec = document["spec"]
            spec.setdefault("traffic", [{"percent": 100, "latestRevision": True}])
            self.store.services[name] = {"object": {"apiVersion": API_VERSION, "kind": "Service",
                                                    "metadata": metadata, "spec": spec},
                                         "ports": {}, "counter": 0, "error": None,
                                         "iam": {"version": 1, "etag": "BwYAAAAAAAA=", "bindings": []}}
            return self._commit(name, snapshot, previous_traffic=None)

    def replace_service(self, name: str, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                raise self._not_found("SERVICE", name)
            document = self._check_service_body(body)
            if document["metadata"].get("name", name) != name:
                raise InvalidArgument.field("metadata.name", f"the name {document['metadata']['name']!r} in the body "
                                            f"does not match the service {name!r} in the URL")
            self._check_namespace(document, namespace)
            entry = self.store.services[name]
            stored = entry["object"]
            sent_version = document["metadata"].get("resourceVersion")
            if sent_version is not None and str(sent_version) != stored["metadata"]["resourceVersion"]:
                raise Aborted(f"Conflict for resource '{name}': version '{sent_version}' was specified but current "
                              f"version is '{stored['metadata']['resourceVersion']}'. Another change was made "
                              f"meanwhile: read the service again and retry.")
            snapshot = self.store.snapshot()
            previous_traffic = copy.deepcopy(stored["spec"].get("traffic"))
            metadata = stored["metadata"]
            metadata["generation"] += 1
            metadata["resourceVersion"] = self.store.next_resource_version()
            metadata["labels"] = {**document["metadata"].get("labels", {}), LOCATION_LABEL: self.region}
            annotations = dict(document["metadata"].get("annotations", {}))
            annotations.pop(URLS_ANNOTATION, None)
            metadata["annotations"] = annotations
            spec = document["spec"]
            spec.setdefault("traffic", stored["spec"].get("traffic") or [{"percent": 100, "latestRevision": True}])
            stored["spec"] = spec
            return self._commit(name, snapshot, previous_traffic)

    def _check_service_body(self, body: Any) -> dict[str, Any]:
        document = copy.deepcopy(_object(body, "body"))
        if not document:
            raise InvalidArgument.field("body", "expected a Service object")
        unknown = sorted(set(document) - SERVICE_FIELDS)
        if unknown:
            raise InvalidArgument.field(unknown[0], f"unknown field {unknown[0]!r} in a Service")
        if document.get("kind", "Service") != "Service":
            raise InvalidArgument.field("kind", f"expected 'Service', got {document['kind']!r}")
        document.pop("status", None)
        document["metadata"] = _object(document.get("metadata"), "metadata")
        for key in ("labels", "annotations"):
            values = _object(document["metadata"].get(key), f"metadata.{key}")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
                raise InvalidArgument.field(f"metadata.{key}", "keys and values must be strings")
        spec = document["spec"] = _object(document.get("spec"), "spec")
        template = spec["template"] = _object(spec.get("template"), "spec.template")
        template["metadata"] = _object(template.get("metadata"), "spec.template.metadata")
        template_spec = template["spec"] = _object(template.get("spec"), "spec.template.spec")
        containers = template_spec.get("containers")
        if not isinstance(containers, list) or len(containers) != 1 or not isinstance(containers[0], dict):
            raise InvalidArgument.field("spec.template.spec.containers", "exactly one container is required")
        container = containers[0]
        if not isinstance(container.get("image"), str) or not container["image"]:
            raise InvalidArgument.field("spec.template.spec.containers[0].image", "an image is required")
        env = container.get("env", [])
        if not isinstance(env, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env):
            raise InvalidArgument.field("spec.template.spec.containers[0].env", "expected a list of {name, value}")
        ports = container.get("ports", [])
        if not isinstance(ports, list) or len(ports) > 1 or not all(
                isinstance(p, dict) and type(p.get("containerPort")) is int and 0 < p["containerPort"] < 65536
                for p in ports):
            raise InvalidArgument.field("spec.template.spec.containers[0].ports",
                                        "at most one port, with a containerPort from 1 to 65535")
        concurrency = template_spec.get("containerConcurrency")
        if concurrency is not None and (type(concurrency) is not int or not 0 <= concurrency <= 1000):
            raise InvalidArgument.field("spec.template.spec.containerConcurrency", "must be an integer from 0 to 1000")
        traffic = spec.get("traffic")
        if traffic is not None and not isinstance(traffic, list):
            raise InvalidArgument.field("spec.traffic", "expected a list of traffic targets")
        return document

    def _check_namespace(self, document: dict[str, Any], namespace: str) -> None:
        names = {self.project, str(self.project_number())}
        for given in (namespace, document["metadata"].get("namespace")):
            if given is not None and given not in names:
                raise NotFound(f"Project '{given}' not found or permission denied (this local Cloud Run serves "
                               f"project '{self.project}')")

    def project_number(self) -> int:
        return 100000000000 + sum(ord(c) * 31**i for i, c in enumerate(self.project)) % 899999999999

    def _commit(self, name: str, snapshot: dict[str, Any], previous_traffic: list | None) -> dict[str, Any]:
        """After a create or replace: the new revision (if the template changed), traffic checked,
        then reconciled. Anything invalid restores the state as it was before the request."""
        entry = self.store.services[name]
        try:
            created = self._revision_for_template(name, entry)
            self._check_traffic(name, entry["object"]["spec"]["traffic"])
        except BaseException:
            self.store.restore(snapshot)
            raise
        entry["error"] = None
        self.store.save()
        if created is not None:
            self.reconcile()  # starts the new revision (or records why it could not start)
            revision = self.store.revisions[created]
            if not revision.get("ready"):
                entry = self.store.services[name]
                entry["error"] = f"Revision '{created}' is not ready and cannot serve traffic. {revision['message']}"
                targets = entry["object"]["spec"]["traffic"]
                if any(t.get("revisionName") == created and t.get("percent") for t in targets):
                    # Traffic pinned to a revision that cannot serve: keep serving as before.
                    entry["object"]["spec"]["traffic"] = previous_traffic or [{"percent": 100, "latestRevision": True}]
        self.reconcile()
        return self.service(name)

    def _revision_for_template(self, service: str, entry: dict[str, Any]) -> str | None:
        template = entry["object"]["spec"]["template"]
        name = template["metadata"].get("name")
        existing = self.store.revisions_of(service)
        if name is not None:
            check_revision_name(name, service, "spec.template.metadata.name")
            if name in self.store.revisions:
                if self.store.revisions[name]["template"] != template:
                    raise AlreadyExists(f"Revision named '{name}' with different configuration already exists.")
                return None
        elif existing and existing[-1]["template"] == template:
            return None  # a traffic-only change: no new revision
        entry["counter"] = entry.get("counter", 0) + 1
        if name is None:
            suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(3))
            name = f"{service}-{entry['counter']:05d}-{suffix}"
            while name in self.store.revisions:
                name = name[:-3] + "".join(random.choice(string.ascii_lowercase) for _ in range(3))
        labels = {**template["metadata"].get("labels", {}), SERVICE_LABEL: service, CONFIGURATION_LABEL: service,
                  LOCATION_LABEL: self.region}
        self.store.revisions[name] = {
            "service": service, "server": None, "ready": False, "message": "Deploying revision.", "port": None,
            "template": copy.deepcopy(template),
            "object": {"apiVersion": API_VERSION, "kind": "Revision",
                       "metadata": {"name": name, "namespace": self.project, "labels": labels,
                                    "annotations": dict(template["metadata"].get("annotations", {})),
                                    "creationTimestamp": now(), "generation": 1, "uid": str(uuid.uuid4())},
                       "spec": copy.deepcopy(template["spec"])},
        }
        return name

    def _check_traffic(self, service: str, traffic: Any) -> None:
        if not isinstance(traffic, list):
            raise InvalidArgument.field("spec.traffic", "expected a list of traffic targets")
        total, tags, has_percent = 0, set(), False
        for index, target in enumerate(traffic):
            field = f"spec.traffic[{index}]"
            if not isinstance(target, dict):
                raise InvalidArgument.field(field, "expected a traffic target object")
            unknown = sorted(set(target) - {"revisionName", "latestRevision", "percent", "tag", "configurationName",
                                            "url"})
            if unknown:
                raise InvalidArgument.field(f"{field}.{unknown[0]}", "unknown field of a traffic target")
            revision = target.get("revisionName")
            latest = target.get("latestRevision")
            if latest not in (None, True, False):
                raise InvalidArgument.field(f"{field}.latestRevision", "expected true or false")
            if latest and revision:
                raise InvalidArgument.field(f"{field}.revisionName",
                                            "may not be set when latestRevision is true")
            if not latest and not revision:
                raise InvalidArgument.field(field, "a traffic target names a revisionName or sets latestRevision")
            if revision is not None:
                if not isinstance(revision, str) or self.store.revisions.get(revision, {}).get("service") != service:
                    raise InvalidArgument.field(f"{field}.revisionName",
                                                f"revision {revision!r} does not exist in service {service!r}")
            percent = target.get("percent")
            if percent is not None:
                if type(percent) is not int or not 0 <= percent <= 100:
                    raise InvalidArgument.field(f"{field}.percent", f"must be an integer from 0 to 100, got {percent!r}")
                total += percent
                has_percent = True
            tag = target.get("tag")
            if tag is not None:
                check_tag(tag, f"{field}.tag")
                if tag in tags:
                    raise InvalidArgument.field(f"{field}.tag", f"tag {tag!r} is used more than once")
                tags.add(tag)
            if percent and revision and not self.store.revisions[revision].get("ready") \
                    and not self.store.revisions[revision]["message"] == "Deploying revision.":
                raise FailedPrecondition(f"Revision '{revision}' is not ready and cannot serve traffic: "
                                         f"{self.store.revisions[revision]['message']}")
        if has_percent and total != 100:
            raise InvalidArgument.field("spec.traffic", f"traffic percentages must add up to 100, they add up to "
                                        f"{total}")
        if not has_percent:
            raise InvalidArgument.field("spec.traffic", "at least one traffic target must carry a percent")

    def delete_service(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                self.service(name)  # raises NotFound
            for revision in self.store.revisions_of(name):
                self.store.revisions.pop(revision["object"]["metadata"]["name"])
            del self.store.services[name]
            self.store.save()
            self.reconcile()
            return {"status": "Success", "details": {"name": name, "kind": "services"}}

    def delete_revision(self, name: str) -> dict[str, Any]:
        with self.lock:
            document = self.revision(name)
            service = self.store.revisions[name]["service"]
            for target in self._resolved_traffic(service):
                if target.get("revisionName") == name and (target.get("percent") or target.get("tag")):
                    why = f"{target['percent']}% of the traffic" if target.get("percent") else f"tag {target['tag']!r}"
                    raise FailedPrecondition(f"Revision '{name}' is referenced by a traffic target ({why}) of "
                                             f"service '{service}' and cannot be deleted. Move its traffic and "
                                             f"tags first (gcloud run services update-traffic).")
            self.store.revisions.pop(name)
            self.store.save()
            self.reconcile()
            return {"status": "Success", "details": {"name": document["metadata"]["name"], "kind": "revisions"}}

    # ------------------------------------------------------------ IAM

    def iam_policy(self, service: str) -> dict[str, Any]:
        with self.lock:
            self.service(service)
            return copy.deepcopy(self.store.services[service]["iam"])

    def set_iam_policy(self, service: str, body: Any) -> dict[str, Any]:
        with self.lock:
            self.service(service)
            policy = _object(_object(body, "body").get("policy"), "policy")
            bindings = policy.get("bindings", [])
            if not isinstance(bindings, list) or not all(
                    isinstance(b, dict) and isinstance(b.get("role"), str) and isinstance(b.get("members"), list)
                    for b in bindings):
                raise InvalidArgument.field("policy.bindings", "expected a list of {role, members}")
            current = self.store.services[service]["iam"]
            if policy.get("etag") not in (None, current["etag"]):
                raise Aborted("There were concurrent policy changes. Please retry the whole read-modify-write "
                              "with exponential backoff.")
            counter = int.from_bytes(base64.b64decode(current["etag"]), "big") + 1
            etag = base64.b64encode(counter.to_bytes(8, "big")).decode()
            self.store.services[service]["iam"] = {"version": 1, "etag": etag, "bindings": bindings}
            self.store.save()
            self.reconcile()  # who may invoke it is enforced by the data plane
            return copy.deepcopy(self.store.services[service]["iam"])

    # ------------------------------------------------------------ liveness

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
