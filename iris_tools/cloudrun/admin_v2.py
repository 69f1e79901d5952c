"""Cloud Run Admin API v2 on the same store as v1: a service made through either is the service the other describes,
and a traffic change through either moves the same Envoy routes.

    POST   /v2/projects/{p}/locations/{r}/services?serviceId=S      create   -> Operation
    GET    /v2/projects/{p}/locations/{r}/services[/S]              list, get
    PATCH  /v2/projects/{p}/locations/{r}/services/S                update (a stale etag: 409 ABORTED) -> Operation
    DELETE /v2/projects/{p}/locations/{r}/services/S                delete   -> Operation
    GET    /v2/projects/{p}/locations/{r}/services/S/revisions[/R]  list, get;  DELETE .../revisions/R -> Operation
    GET    /v2/projects/{p}/locations/{r}/operations/O              get;  POST .../operations/O:wait

Each v2 call is converted to the v1 (Knative) document and back, so every check, write and reconcile is v1's.
Operations are google.longrunning.Operation: `response` and `metadata` typed
`type.googleapis.com/google.cloud.run.v2.Service` (or Revision); one is done once the service is reconciled at the
generation it made (Ready True, or False: then `error` says why). Enums are read by name or number, and written
by number when the request asks `$alt=json;enum-encoding=int` (as Google's clients do), else by name. int64 fields
are strings and durations "300s", as proto3 JSON has them.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from typing import Any

from iris_tools.cloudrun.control import LocalCloudRun
from iris_tools.cloudrun.errors import Aborted, InvalidArgument, ResourceNotFound
from iris_tools.cloudrun.resources import LOCATION_LABEL
from iris_tools.cloudrun.validation import object_field as _object

TYPE_PREFIX = "type.googleapis.com/google.cloud.run.v2."
TRAFFIC_TYPES = {"TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED": 0, "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST": 1,
                 "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION": 2}
STATES = {"STATE_UNSPECIFIED": 0, "CONDITION_PENDING": 1, "CONDITION_RECONCILING": 2, "CONDITION_FAILED": 3,
          "CONDITION_SUCCEEDED": 4}
SEVERITIES = {"SEVERITY_UNSPECIFIED": 0, "ERROR": 1, "WARNING": 2, "INFO": 3}
INGRESS = {"INGRESS_TRAFFIC_UNSPECIFIED": 0, "INGRESS_TRAFFIC_ALL": 1, "INGRESS_TRAFFIC_INTERNAL_ONLY": 2,
           "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": 3, "INGRESS_TRAFFIC_NONE": 4}
LAUNCH_STAGES = {"LAUNCH_STAGE_UNSPECIFIED": 0, "UNIMPLEMENTED": 6, "PRELAUNCH": 7, "EARLY_ACCESS": 1, "ALPHA": 2,
                 "BETA": 3, "GA": 4, "DEPRECATED": 5}
MIN_SCALE, MAX_SCALE = "autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale"
SYSTEM_ANNOTATIONS = ("serving.knative.dev/", "run.googleapis.com/")  # Cloud Run's own: not a v2 client's to set
# Every field of google.cloud.run.v2's Service, RevisionTemplate and Container (a client echoes them all back); the
# ones this local Cloud Run does not apply are accepted and not kept (docs/local-cloud-run.md says which).
SERVICE_FIELDS = {"annotations", "binaryAuthorization", "buildConfig", "client", "clientVersion", "conditions",
                  "createTime", "creator", "customAudiences", "defaultUriDisabled", "deleteTime", "description", "etag",
                  "expireTime", "generation", "iapEnabled", "ingress", "invokerIamDisabled", "labels", "lastModifier",
                  "latestCreatedRevision", "latestReadyRevision", "launchStage", "multiRegionSettings", "name",
                  "observedGeneration", "reconciling", "satisfiesPzs", "scaling", "template", "terminalCondition",
                  "threatDetectionEnabled", "traffic", "trafficStatuses", "uid", "updateTime", "uri", "urls"}
TEMPLATE_FIELDS = {"annotations", "containers", "encryptionKey", "encryptionKeyRevocationAction",
                   "encryptionKeyShutdownDuration", "executionEnvironment", "gpuZonalRedundancyDisabled",
                   "healthCheckDisabled", "labels", "maxInstanceRequestConcurrency", "nodeSelector", "revision",
                   "scaling", "serviceAccount", "serviceMesh", "sessionAffinity", "timeout", "volumes", "vpcAccess"}
CONTAINER_FIELDS = {"args", "baseImageUri", "buildInfo", "command", "dependsOn", "env", "image", "livenessProbe",
                    "name", "ports", "readinessProbe", "resources", "sourceCode", "startupProbe", "volumeMounts",
                    "workingDir"}
WAIT_LIMIT_S = 600.0


# ---------------------------------------------------------------- reading what a client sends


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument.field(field, f"expected a list, got {value!r}")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument.field(field, f"expected a string, got {value!r}")
    return value


def _whole(value: Any, field: str, low: int, high: int) -> int:
    """An int32 or int64 (proto3 JSON writes int64 as a string)."""
    try:
        number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise InvalidArgument.field(field, f"expected a whole number from {low} to {high}, got {value!r}")
    return number


def _enum(value: Any, table: dict[str, int], field: str) -> str:
    """An enum given by name or by number -> its name."""
    if isinstance(value, str) and value in table:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in table.items():
            if number == value:
                return name
    raise InvalidArgument.field(field, f"expected one of {', '.join(table)} (or its number), got {value!r}")


def _seconds(value: Any, field: str) -> int:
    """A google.protobuf.Duration ("300s", "1.5s") -> whole seconds, 1 to 3600 as Cloud Run takes them."""
    text = _text(value, field)
    try:
        seconds = float(text.removesuffix("s")) if text.endswith("s") else None
    except ValueError:
        seconds = None
    if seconds is None or not 1 <= seconds <= 3600:
        raise InvalidArgument.field(field, f"expected a duration from 1s to 3600s, got {value!r}")
    return int(seconds)


def _short(name: str, kind: str) -> str:
    """`projects/p/locations/r/services/s/revisions/x` (or `x`) -> `x`."""
    return name.rsplit(f"/{kind}/", 1)[-1]


def _unknown(document: dict[str, Any], known: set[str], field: str) -> None:
    extra = sorted(set(document) - known)
    if extra:
        raise InvalidArgument.field(f"{field}{extra[0]}", "unknown field")


def _template(value: Any, field: str = "service.template") -> dict[str, Any]:
    """A v2 RevisionTemplate -> a Knative revision template."""
    template = _object(value, field)
    _unknown(template, TEMPLATE_FIELDS, f"{field}.")
    annotations = {k: _text(v, f"{field}.annotations.{k}") for k, v in _object(template.get("annotations"),
                                                                             f"{field}.annotations").items()}
    metadata: dict[str, Any] = {"annotations": annotations,
                                "labels": {k: _text(v, f"{field}.labels.{k}")
                                           for k, v in _object(template.get("labels"), f"{field}.labels").items()}}
    if template.get("revision"):
        metadata["name"] = _short(_text(template["revision"], f"{field}.revision"), "revisions")
    scaling = _object(template.get("scaling"), f"{field}.scaling")
    for key, annotation in (("minInstanceCount", MIN_SCALE), ("maxInstanceCount", MAX_SCALE)):
        if scaling.get(key) not in (None, 0, "0"):  # proto3: 0 is unset
            annotations[annotation] = str(_whole(scaling[key], f"{field}.scaling.{key}", 0, 1000))
    containers = _list(template.get("containers"), f"{field}.containers")
    if len(containers) != 1:
        raise InvalidArgument.field(f"{field}.containers", "exactly one container (this local Cloud Run runs one)")
    spec: dict[str, Any] = {"containers": [_container(containers[0], f"{field}.containers[0]")]}
    if template.get("maxInstanceRequestConcurrency") not in (None, 0, "0"):
        spec["containerConcurrency"] = _whole(template["maxInstanceRequestConcurrency"],
                                              f"{field}.maxInstanceRequestConcurrency", 0, 1000)
    if template.get("timeout") not in (None, "", "0s"):
        spec["timeoutSeconds"] = _seconds(template["timeout"], f"{field}.timeout")
    if template.get("serviceAccount"):
        spec["serviceAccountName"] = _text(template["serviceAccount"], f"{field}.serviceAccount")
    return {"metadata": metadata, "spec": spec}


def _container(value: Any, field: str) -> dict[str, Any]:
    container = _object(value, field)
    _unknown(container, CONTAINER_FIELDS, f"{field}.")
    image = container.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument.field(f"{field}.image", "an image is required")
    found: dict[str, Any] = {"image": image}
    env = []
    for index, item in enumerate(_list(container.get("env"), f"{field}.env")):
        item = _object(item, f"{field}.env[{index}]")
        env.append({"name": _text(item.get("name"), f"{field}.env[{index}].name"),
                    "value": _text(item.get("value", ""), f"{field}.env[{index}].value")})
    if env:
        found["env"] = env
    resources = _object(container.get("resources"), f"{field}.resources")
    limits = _object(resources.get("limits"), f"{field}.resources.limits")
    if limits:
        found["resources"] = {"limits": {k: _text(v, f"{field}.resources.limits.{k}") for k, v in limits.items()}}
    ports = _list(container.get("ports"), f"{field}.ports")
    if ports:
        port = _object(ports[0], f"{field}.ports[0]")
        found["ports"] = [{"containerPort": _whole(port.get("containerPort"), f"{field}.ports[0].containerPort", 1,
                                                   65535), "name": port.get("name") or "http1"}]
    return found


def _traffic(value: Any, field: str = "service.traffic") -> list[dict[str, Any]]:
    targets = []
    for index, item in enumerate(_list(value, field)):
        item = _object(item, f"{field}[{index}]")
        _unknown(item, {"type", "revision", "percent", "tag"}, f"{field}[{index}].")
        kind = _enum(item.get("type", 0), TRAFFIC_TYPES, f"{field}[{index}].type")
        target: dict[str, Any] = {}
        if kind.endswith("_LATEST"):
            target["latestRevision"] = True
        elif kind.endswith("_REVISION"):
            target["revisionName"] = _short(_text(item.get("revision"), f"{field}[{index}].revision"), "revisions")
        else:
            raise InvalidArgument.field(f"{field}[{index}].type", "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST or _REVISION")
        if item.get("percent") is not None:
            target["percent"] = _whole(item["percent"], f"{field}[{index}].percent", 0, 100)
        if item.get("tag"):
            target["tag"] = _text(item["tag"], f"{field}[{index}].tag")
        targets.append(target)
    return targets


def to_knative(body: Any, name: str, stored: dict[str, Any] | None) -> dict[str, Any]:
    """A v2 Service -> the Knative Service that v1 stores (the stored one's Cloud Run annotations kept)."""
    service = _object(body, "service")
    _unknown(service, SERVICE_FIELDS, "service.")
    annotations = {k: _text(v, f"service.annotations.{k}")
                   for k, v in _object(service.get("annotations"), "service.annotations").items()
                   if not k.startswith(SYSTEM_ANNOTATIONS)}
    if stored is not None:
        annotations.update({k: v for k, v in stored["metadata"].get("annotations", {}).items()
                            if k.startswith(SYSTEM_ANNOTATIONS)})
    labels = {k: _text(v, f"service.labels.{k}") for k, v in _object(service.get("labels"), "service.labels").items()}
    if service.get("template") is None:
        raise InvalidArgument.field("service.template", "a template is required")
    template = _template(service["template"])
    if stored is not None and _template(_template_v2(stored["spec"]["template"])) == template:
        template = copy.deepcopy(stored["spec"]["template"])  # what v2 sees of it is unchanged: no new revision
    document: dict[str, Any] = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                "metadata": {"name": name, "labels": labels, "annotations": annotations},
                                "spec": {"template": template}}
    traffic = _traffic(service.get("traffic"))
    if traffic:
        document["spec"]["traffic"] = traffic
    return document


# ---------------------------------------------------------------- writing what a client reads


def etag_of(knative: dict[str, Any]) -> str:
    return f'"{knative["metadata"]["resourceVersion"]}"'


def _condition(condition: dict[str, Any]) -> dict[str, Any]:
    state = {"True": "CONDITION_SUCCEEDED", "False": "CONDITION_FAILED"}.get(condition.get("status"),
                                                                            "CONDITION_RECONCILING")
    found = {"type": condition.get("type", ""), "state": state,
             "lastTransitionTime": condition.get("lastTransitionTime")}
    if condition.get("message"):
        found["message"] = condition["message"]
    if state == "CONDITION_FAILED":
        found["severity"] = "ERROR"
    return {k: v for k, v in found.items() if v is not None}


def _template_v2(template: dict[str, Any], revision_name: str | None = None) -> dict[str, Any]:
    metadata, spec = template.get("metadata", {}), template.get("spec", {})
    annotations = dict(metadata.get("annotations", {}))
    scaling = {key: int(annotations.pop(annotation)) for key, annotation in
               (("minInstanceCount", MIN_SCALE), ("maxInstanceCount", MAX_SCALE)) if annotation in annotations}
    containers = []
    for container in spec.get("containers", []):
        found: dict[str, Any] = {"image": container.get("image", "")}
        if container.get("env"):
            found["env"] = [{"name": e.get("name", ""), "value": str(e.get("value", ""))} for e in container["env"]]
        if (container.get("resources") or {}).get("limits"):
            found["resources"] = {"limits": dict(container["resources"]["limits"])}
        if container.get("ports"):
            found["ports"] = [{"containerPort": p.get("containerPort"), "name": p.get("name", "http1")}
                              for p in container["ports"]]
        containers.append(found)
    found_template: dict[str, Any] = {
        "labels": {k: v for k, v in metadata.get("labels", {}).items() if not k.startswith(("serving.knative.dev/",
                                                                                            "cloud.googleapis.com/"))},
        "annotations": {k: v for k, v in annotations.items() if not k.startswith(SYSTEM_ANNOTATIONS)},
        "containers": containers, "maxInstanceRequestConcurrency": spec.get("containerConcurrency", 80),
        "timeout": f"{spec.get('timeoutSeconds', 300)}s"}
    if revision_name or metadata.get("name"):
        found_template["revision"] = revision_name or metadata["name"]
    if scaling:
        found_template["scaling"] = scaling
    if spec.get("serviceAccountName"):
        found_template["serviceAccount"] = spec["serviceAccountName"]
    return found_template


class AdminV2:
    """The v2 calls, on a LocalCloudRun; plain values in and out (endpoints.py routes to it)."""

    def __init__(self, cloud_run: LocalCloudRun) -> None:
        self.cloud_run = cloud_run
        self.operations: dict[str, dict[str, Any]] = {}  # id -> what it waits for (kept while this process runs)
        self.lock = threading.Lock()

    @property
    def parent(self) -> str:
        return f"projects/{self.cloud_run.project}/locations/{self.cloud_run.region}"

    def check_region(self, region: str) -> None:
        if region != self.cloud_run.region:
            raise ResourceNotFound(f"Location '{region}' not found: this local Cloud Run serves region "
                                   f"'{self.cloud_run.region}'")

    # ------------------------------------------------------------ documents

    def service(self, knative: dict[str, Any]) -> dict[str, Any]:
        metadata, spec, status = knative["metadata"], knative["spec"], knative.get("status", {})
        name = metadata["name"]
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        ready = conditions.get("Ready", {})
        generation = int(metadata.get("generation", 1))
        observed = int(status.get("observedGeneration", 0))
        revisions = f"{self.parent}/services/{name}/revisions/"
        traffic = [self._target(t, revisions) for t in spec.get("traffic", [])]
        statuses = []
        for target in status.get("traffic", []):
            entry = self._target(target, revisions, resolved=True)
            if target.get("url") and target.get("tag"):
                entry["uri"] = target["url"]
            statuses.append(entry)
        document = {
            "name": f"{self.parent}/services/{name}", "uid": metadata.get("uid", ""), "generation": str(generation),
            "labels": {k: v for k, v in metadata.get("labels", {}).items() if k != LOCATION_LABEL},
            "annotations": {k: v for k, v in metadata.get("annotations", {}).items()
                            if not k.startswith("serving.knative.dev/") and k != "run.googleapis.com/urls"},
            "createTime": metadata.get("creationTimestamp"),
            "updateTime": ready.get("lastTransitionTime") or metadata.get("creationTimestamp"),
            "creator": "local", "lastModifier": "local", "ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA",
            "template": _template_v2(spec.get("template", {})), "traffic": traffic,
            "observedGeneration": str(observed), "terminalCondition": _condition(ready),
            "conditions": [_condition(c) for kind, c in conditions.items() if kind != "Ready"],
            "latestReadyRevision": revisions + status["latestReadyRevisionName"]
            if status.get("latestReadyRevisionName") else "",
            "latestCreatedRevision": revisions + status["latestCreatedRevisionName"]
            if status.get("latestCreatedRevisionName") else "",
            "trafficStatuses": statuses, "uri": status.get("url", ""),
            "urls": [status["url"]] if status.get("url") else [],
            "reconciling": observed != generation or ready.get("status") not in ("True", "False"),
            "etag": etag_of(knative)}
        return document

    @staticmethod
    def _target(target: dict[str, Any], revisions: str, resolved: bool = False) -> dict[str, Any]:
        latest = bool(target.get("latestRevision"))
        entry: dict[str, Any] = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" if latest
                                 else "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"}
        if target.get("revisionName") and (resolved or not latest):
            entry["revision"] = target["revisionName"]
        if target.get("percent"):
            entry["percent"] = target["percent"]
        if target.get("tag"):
            entry["tag"] = target["tag"]
        return entry

    def revision(self, knative: dict[str, Any]) -> dict[str, Any]:
        metadata, status = knative["metadata"], knative.get("status", {})
        service = metadata.get("labels", {}).get("serving.knative.dev/service", "")
        template = _template_v2({"metadata": metadata, "spec": knative.get("spec", {})})
        conditions = status.get("conditions", [])
        ready = next((c for c in conditions if c.get("type") == "Ready"), {})
        document = {"name": f"{self.parent}/services/{service}/revisions/{metadata['name']}",
                    "uid": metadata.get("uid", ""), "generation": str(metadata.get("generation", 1)),
                    "labels": template["labels"], "annotations": template["annotations"],
                    "createTime": metadata.get("creationTimestamp"), "launchStage": "GA",
                    "service": f"{self.parent}/services/{service}", "containers": template["containers"],
                    "maxInstanceRequestConcurrency": template["maxInstanceRequestConcurrency"],
                    "timeout": template["timeout"], "conditions": [_condition(c) for c in conditions],
                    "observedGeneration": str(status.get("observedGeneration", 1)),
                    "reconciling": ready.get("status") not in ("True", "False"),
                    "etag": f'"{metadata.get("uid", "")}"'}
        if template.get("scaling"):
            document["scaling"] = template["scaling"]
        if template.get("serviceAccount"):
            document["serviceAccount"] = template["serviceAccount"]
        return document

    # ------------------------------------------------------------ calls

    def list_services(self) -> dict[str, Any]:
        return {"services": [self.service(s) for s in self.cloud_run.services()["items"]]}

    def get_service(self, name: str) -> dict[str, Any]:
        return self.service(self.cloud_run.service(name))

    def create_service(self, service_id: str | None, body: Any) -> dict[str, Any]:
        if not service_id:
            raise InvalidArgument.field("serviceId", "the new service's id is required (?serviceId=...)")
        knative = self.cloud_run.create_service(to_knative(body, service_id, None), self.cloud_run.project)
        return self._operation("Service", service_id, knative)

    def update_service(self, name: str, body: Any) -> dict[str, Any]:
        stored = self.cloud_run.service(name)
        document = to_knative(body, name, stored)
        etag = _object(body, "service").get("etag")
        if etag:
            version = str(etag).strip('"').removeprefix("W/").strip('"')
            if version != stored["metadata"]["resourceVersion"]:
                raise Aborted(f"Conflict for resource '{name}': the etag {etag} is not the current one "
                              f"({etag_of(stored)}); read the service again and retry. Nothing was changed.")
            document["metadata"]["resourceVersion"] = version  # v1's compare-and-swap makes the check atomic
        knative = self.cloud_run.replace_service(name, document, self.cloud_run.project)
        return self._operation("Service", name, knative)

    def delete_service(self, name: str) -> dict[str, Any]:
        last = self.service(self.cloud_run.service(name))
        self.cloud_run.delete_service(name)
        return self._finished("Service", last)

    def list_revisions(self, service: str) -> dict[str, Any]:
        self.cloud_run.service(service)
        listing = self.cloud_run.revisions({"serving.knative.dev/service": service})
        return {"revisions": [self.revision(r) for r in listing["items"]]}

    def get_revision(self, service: str, name: str) -> dict[str, Any]:
        return self.revision(self._revision_of(service, name))

    def delete_revision(self, service: str, name: str) -> dict[str, Any]:
        last = self.revision(self._revision_of(service, name))
        self.cloud_run.delete_revision(name)
        return self._finished("Revision", last)

    def _revision_of(self, service: str, name: str) -> dict[str, Any]:
        knative = self.cloud_run.revision(name)
        if knative["metadata"].get("labels", {}).get("serving.knative.dev/service") != service:
            raise ResourceNotFound(f"Revision '{name}' not found in service '{service}'")
        return knative

    # ------------------------------------------------------------ long-running operations

    def _operation(self, kind: str, service: str, knative: dict[str, Any]) -> dict[str, Any]:
        identifier = str(uuid.uuid4())
        with self.lock:
            self.operations[identifier] = {"kind": kind, "service": service,
                                           "generation": int(knative["metadata"]["generation"])}
        return self.operation(identifier)

    def _finished(self, kind: str, document: dict[str, Any]) -> dict[str, Any]:
        identifier = str(uuid.uuid4())
        with self.lock:
            self.operations[identifier] = {"kind": kind, "result": document}
        return self.operation(identifier)

    def operation(self, identifier: str) -> dict[str, Any]:
        with self.lock:
            waiting = copy.deepcopy(self.operations.get(identifier))
        if waiting is None:
            raise ResourceNotFound(f"Operation '{identifier}' not found")
        name = f"{self.parent}/operations/{identifier}"
        typed = TYPE_PREFIX + waiting["kind"]
        if "result" in waiting:
            document = waiting["result"]
            return {"name": name, "metadata": {"@type": typed, **document}, "done": True,
                    "response": {"@type": typed, **document}}
        try:
            knative = self.cloud_run.service(waiting["service"])
        except ResourceNotFound:
            return {"name": name, "done": True, "error": {"code": 5, "message": f"service {waiting['service']} was "
                                                                                f"deleted meanwhile"}}
        document = self.service(knative)
        ready = next((c for c in knative.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
        settled = int(knative["status"].get("observedGeneration", 0)) >= waiting["generation"] \
            and ready.get("status") in ("True", "False")
        operation: dict[str, Any] = {"name": name, "metadata": {"@type": typed, **document}, "done": settled}
        if settled and ready.get("status") == "False":
            operation["error"] = {"code": 9, "message": ready.get("message", "the service is not ready")}
        elif settled:
            operation["response"] = {"@type": typed, **document}
        return operation

    def wait(self, identifier: str, body: Any) -> dict[str, Any]:
        timeout = _object(body, "body").get("timeout")
        limit = min(WAIT_LIMIT_S, _seconds(timeout, "timeout")) if timeout else WAIT_LIMIT_S
        deadline = time.monotonic() + limit
        while True:
            operation = self.operation(identifier)
            if operation["done"] or time.monotonic() >= deadline:
                return operation
            time.sleep(0.2)


def encode_enums(document: Any, as_numbers: bool) -> Any:
    """The document with its enums as numbers (`enum-encoding=int`), or as it is (names)."""
    if not as_numbers:
        return document
    tables = {"type": TRAFFIC_TYPES, "state": STATES, "severity": SEVERITIES, "ingress": INGRESS,
              "launchStage": LAUNCH_STAGES}
    if isinstance(document, list):
        return [encode_enums(item, True) for item in document]
    if isinstance(document, dict):
        found = {}
        for key, value in document.items():
            table = tables.get(key)
            if table is not None and isinstance(value, str) and value in table:
                found[key] = table[value]
            else:
                found[key] = encode_enums(value, True)
        return found
    return document

