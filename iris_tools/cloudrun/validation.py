"""What the Admin API accepts: a Service body and its traffic targets, checked before anything is stored.

Each refusal is an InvalidArgument naming the field (as Cloud Run's own API answers), or a
FailedPrecondition for traffic to a revision that cannot serve.
"""

from __future__ import annotations

import copy
from typing import Any

from iris_tools.cloudrun.autoscaler import ScalingError, ScalingSpec
from iris_tools.cloudrun.errors import FailedPrecondition, InvalidArgument
from iris_tools.cloudrun.name_checks import check_tag
from iris_tools.cloudrun.resources import DEPLOYING

SERVICE_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
TRAFFIC_FIELDS = {"revisionName", "latestRevision", "percent", "tag", "configurationName", "url"}


def object_field(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument.field(field, f"expected an object, got {type(value).__name__}")
    return value


def check_service_body(body: Any) -> dict[str, Any]:
    """A copy of `body` as a Service the API can store (status dropped), or the first thing wrong with it."""
    document = copy.deepcopy(object_field(body, "body"))
    if not document:
        raise InvalidArgument.field("body", "expected a Service object")
    unknown = sorted(set(document) - SERVICE_FIELDS)
    if unknown:
        raise InvalidArgument.field(unknown[0], f"unknown field {unknown[0]!r} in a Service")
    if document.get("kind", "Service") != "Service":
        raise InvalidArgument.field("kind", f"expected 'Service', got {document['kind']!r}")
    document.pop("status", None)
    document["metadata"] = object_field(document.get("metadata"), "metadata")
    for key in ("labels", "annotations"):
        values = object_field(document["metadata"].get(key), f"metadata.{key}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise InvalidArgument.field(f"metadata.{key}", "keys and values must be strings")
    spec = document["spec"] = object_field(document.get("spec"), "spec")
    template = spec["template"] = object_field(spec.get("template"), "spec.template")
    template["metadata"] = object_field(template.get("metadata"), "spec.template.metadata")
    template_spec = template["spec"] = object_field(template.get("spec"), "spec.template.spec")
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
    try:
        ScalingSpec.of_template(template["metadata"].get("annotations") or {}, 80 if concurrency is None else concurrency)
    except ScalingError as exc:
        raise InvalidArgument.field(f"spec.template.metadata.annotations[{exc.field}]", str(exc)) from None
    traffic = spec.get("traffic")
    if traffic is not None and not isinstance(traffic, list):
        raise InvalidArgument.field("spec.traffic", "expected a list of traffic targets")
    return document


def default_traffic(traffic: Any) -> None:
    """Knative's defaulting of spec.traffic: a target that names no revision and does not say latestRevision follows
    the latest one (`gcloud run services update --tag T` sends just `{tag: T}`: the tag goes on the latest)."""
    for target in traffic if isinstance(traffic, list) else []:
        if isinstance(target, dict) and "latestRevision" not in target and not target.get("revisionName"):
            target["latestRevision"] = True


def check_traffic(service: str, traffic: Any, revisions: dict[str, dict[str, Any]]) -> None:
    """A service's spec.traffic: targets that exist in the service, percents adding to 100, unique tags."""
    if not isinstance(traffic, list):
        raise InvalidArgument.field("spec.traffic", "expected a list of traffic targets")
    total, tags, has_percent = 0, set(), False
    for index, target in enumerate(traffic):
        field = f"spec.traffic[{index}]"
        if not isinstance(target, dict):
            raise InvalidArgument.field(field, "expected a traffic target object")
        unknown = sorted(set(target) - TRAFFIC_FIELDS)
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
            if not isinstance(revision, str) or revisions.get(revision, {}).get("service") != service:
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
        if percent and revision and not revisions[revision].get("ready") \
                and revisions[revision]["message"] != DEPLOYING:
            raise FailedPrecondition(f"Revision '{revision}' is not ready and cannot serve traffic: "
                                     f"{revisions[revision]['message']}")
    if has_percent and total != 100:
        raise InvalidArgument.field("spec.traffic", f"traffic percentages must add up to 100, they add up to "
                                    f"{total}")
    if not has_percent:
        raise InvalidArgument.field("spec.traffic", "at least one traffic target must carry a percent")
