"""The control plane: Knative Services and Revisions, as the Admin API reads and writes them.

The API (`api.py`) calls these methods with decoded JSON and sends back what they return. A mutation
validates (`validation.py`) and stores the desired state (`store.py`) under the state lock, then,
with the lock released, reconciles (`supervisor.py`): Envoy serves the new traffic before the call
returns, and a new revision starts in the background (gcloud polls until it is Ready). A read computes
status from what is stored and what is observed at that moment (`status.py`).
"""

from __future__ import annotations

import base64
import copy
import random
import string
import threading
import uuid
from pathlib import Path
from typing import Any

from iris_tools.cloudrun.envoy import Envoy
from iris_tools.cloudrun.jobs import Jobs
from iris_tools.cloudrun.metadata_server import MetadataServer
from iris_tools.cloudrun.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, ResourceNotFound
from iris_tools.cloudrun.name_checks import check_revision_name, check_service_name
from iris_tools.cloudrun.resources import (
    API_VERSION,
    CONFIGURATION_LABEL,
    DEPLOYING,
    LOCATION_LABEL,
    SERVICE_LABEL,
    URLS_ANNOTATION,
    now,
)
from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.status import revision_document, service_document
from iris_tools.cloudrun.store import Store
from iris_tools.cloudrun.supervisor import Supervisor
from iris_tools.cloudrun.validation import check_service_body, check_traffic, default_traffic, object_field


class LocalCloudRun:
    def __init__(self, directory: Path, project: str, region: str, runtime: str = "process") -> None:
        self.directory = directory
        self.store = Store.load(directory, project, region, runtime)
        self.lock = threading.RLock()
        self.routes = Routes(self.store, directory)
        self.supervisor = Supervisor(self.store, directory, self.routes, self.lock)
        self.metadata = MetadataServer(lambda: self.project, self.project_number, lambda: self.region, self.token)
        self.jobs = Jobs(self.store, directory, self.lock, self.project_number, self.task_environment)

    @property
    def project(self) -> str:
        return self.store.data["project"]

    @property
    def region(self) -> str:
        return self.store.data["region"]

    @property
    def envoy(self) -> Envoy | None:
        return self.supervisor.envoy

    def boot(self) -> None:
        self.supervisor.boot()

    def stop_all(self) -> None:
        self.jobs.stop_all()
        self.supervisor.stop_all()

    def task_environment(self) -> dict[str, str]:
        """What every job task gets besides Cloud Run's own variables: the metadata server (this API's port), and
        a gcloud configuration directory of its own, empty, so google-auth's default credentials are the metadata
        server's, never a user's application-default file."""
        host = f"127.0.0.1:{self.store.data.get('api_port')}"
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host,
                "CLOUDSDK_CONFIG": str(self.directory / "task-gcloud")}

    def reconcile(self) -> None:
        self.supervisor.reconcile()

    def token(self) -> str:
        return self.routes.token()

    # ------------------------------------------------------------ reading

    def _not_found(self, kind: str, name: str) -> ResourceNotFound:
        return ResourceNotFound(f"Resource '{name}' of kind '{kind}' in region '{self.region}' in project "
                        f"'{self.project}' does not exist.")

    def service(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                raise self._not_found("SERVICE", name)
            return service_document(self.store, self.routes, self.supervisor, name)

    def services(self) -> dict[str, Any]:
        with self.lock:
            return {"apiVersion": API_VERSION, "kind": "ServiceList", "metadata": {},
                    "items": [self.service(name) for name in sorted(self.store.services)]}

    def revision(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.revisions:
                raise self._not_found("REVISION", name)
            return revision_document(self.store, self.routes, self.supervisor, name)

    def revisions(self, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """The revisions carrying every label of `labels` (all of them when empty), newest first."""
        with self.lock:
            names = [r["object"]["metadata"]["name"] for r in self.store.revisions.values()
                     if all(r["object"]["metadata"].get("labels", {}).get(k) == v for k, v in (labels or {}).items())]
            return {"apiVersion": API_VERSION, "kind": "RevisionList", "metadata": {},
                    "items": [self.revision(name) for name in sorted(names, reverse=True)]}

    # ------------------------------------------------------------ writing

    def create_service(self, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            document = check_service_body(body)
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
            default_traffic(spec["traffic"])
            self.store.services[name] = {"object": {"apiVersion": API_VERSION, "kind": "Service",
                                                    "metadata": metadata, "spec": spec},
                                         "ports": {}, "counter": 0, "error": None,
                                         "iam": {"version": 1, "etag": "BwYAAAAAAAA=", "bindings": []}}
            self._commit(name, snapshot, previous_traffic=None)
        self.reconcile()
        return self.service(name)

    def replace_service(self, name: str, body: Any, namespace: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                raise self._not_found("SERVICE", name)
            document = check_service_body(body)
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
            metadata["resourceVersion"] = self.store.next_resource_version()
            metadata["labels"] = {**document["metadata"].get("labels", {}), LOCATION_LABEL: self.region}
            annotations = dict(document["metadata"].get("annotations", {}))
            annotations.pop(URLS_ANNOTATION, None)
            metadata["annotations"] = annotations
            spec = document["spec"]
            spec.setdefault("traffic", stored["spec"].get("traffic") or [{"percent": 100, "latestRevision": True}])
            default_traffic(spec["traffic"])
            if spec != stored["spec"]:
                metadata["generation"] += 1  # as Knative: the spec's changes, not metadata's, make a generation
            stored["spec"] = spec
            self._commit(name, snapshot, previous_traffic)
        self.reconcile()
        return self.service(name)

    def _check_namespace(self, document: dict[str, Any], namespace: str) -> None:
        names = {self.project, str(self.project_number())}
        for given in (namespace, document["metadata"].get("namespace")):
            if given is not None and given not in names:
                raise ResourceNotFound(f"Project '{given}' not found or permission denied (this local Cloud Run serves "
                               f"project '{self.project}')")

    def project_number(self) -> int:
        return 100000000000 + sum(ord(c) * 31**i for i, c in enumerate(self.project)) % 899999999999

    def _commit(self, name: str, snapshot: dict[str, Any], previous_traffic: list | None) -> None:
        """Under the state lock, after a create or replace: the new revision (if the template changed), traffic
        checked. Anything invalid restores the state as it was before the request. The caller reconciles."""
        entry = self.store.services[name]
        try:
            self._revision_for_template(name, entry)
            check_traffic(name, entry["object"]["spec"]["traffic"], self.store.revisions)
        except BaseException:
            self.store.restore(snapshot)
            raise
        entry["error"] = None
        entry["previous_traffic"] = previous_traffic  # what it goes back to if a revision it names cannot start
        self.store.save()

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
            "service": service, "instances": [], "ready": False, "message": DEPLOYING, "port": None,
            "digest": self.store.images().digest(template["spec"]["containers"][0]["image"]),
            "template": copy.deepcopy(template),
            "object": {"apiVersion": API_VERSION, "kind": "Revision",
                       "metadata": {"name": name, "namespace": self.project, "labels": labels,
                                    "annotations": dict(template["metadata"].get("annotations", {})),
                                    "creationTimestamp": now(), "generation": 1, "uid": str(uuid.uuid4())},
                       "spec": copy.deepcopy(template["spec"])},
        }
        return name

    def delete_service(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.store.services:
                self.service(name)  # raises ResourceNotFound
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
            for target in self.routes.resolved_traffic(service):
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
            policy = object_field(object_field(body, "body").get("policy"), "policy")
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
            policy = copy.deepcopy(self.store.services[service]["iam"])
        self.reconcile()  # who may invoke it is enforced by the data plane
        return policy
