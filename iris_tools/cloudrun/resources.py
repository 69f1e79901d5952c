"""Knative's resource shapes as Cloud Run serves them: the API version, the labels it sets, conditions."""

from __future__ import annotations

import time
from typing import Any

from iris_tools.google.timestamps import rfc3339

API_VERSION = "serving.knative.dev/v1"
SERVICE_LABEL = "serving.knative.dev/service"
NONCE_LABEL = "client.knative.dev/nonce"  # a deploy's own, so gcloud can find the revision it made
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
URLS_ANNOTATION = "run.googleapis.com/urls"
LOCATION_LABEL = "cloud.googleapis.com/location"
INVOKER_ROLE = "roles/run.invoker"
DEPLOYING = "Deploying revision."  # a new revision's message until it is ready or failed


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


def is_public(entry: dict[str, Any]) -> bool:
    """Whether a stored service's IAM policy lets allUsers invoke it."""
    return any(binding.get("role") == INVOKER_ROLE and "allUsers" in binding.get("members", [])
               for binding in entry.get("iam", {}).get("bindings", []))
