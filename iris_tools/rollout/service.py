"""One Cloud Run service as the rollout tools read and write it, through gcloud, on either target.

Reading: the service, its revisions, its traffic shares and annotations. Writing: whole
`update-traffic` commands, and annotations (with a step's split, in the same write) through
`services replace` (the template sent back unchanged: no new revision), so a crash leaves a split
that was set, never a half-applied one; and a candidate deployed with no traffic behind a tag.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, TextIO

from iris_tools.google.gcloud import Gcloud, GcloudError
from iris_tools.google.names import suggest_tag
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.settings import Settings


def model_of(image: str) -> str | None:
    """`iris:svc`, `us-docker.pkg.dev/p/r/iris:svc` or `iris:svc@sha256:...` -> `svc`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


def image_of(revision: dict[str, Any]) -> str | None:
    return (revision.get("spec", {}).get("containers") or [{}])[0].get("image")


def ready(revision: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in revision.get("status", {}).get("conditions", []))


def shares(service: dict[str, Any]) -> dict[str, int]:
    """revision -> its percent of the service's traffic (revisions with none left out)."""
    found: dict[str, int] = {}
    for target in service["status"].get("traffic", []):
        if target.get("percent"):
            name = target.get("revisionName")
            found[name] = found.get(name, 0) + int(target["percent"])
    return found


def tag_urls(service: dict[str, Any]) -> dict[str, str]:
    """revision -> the URL of a tag that names it."""
    return {t.get("revisionName"): t.get("url") for t in service["status"].get("traffic", []) if t.get("tag")}


def annotation(service: dict[str, Any], key: str, default: Any) -> Any:
    raw = service["metadata"].get("annotations", {}).get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def split_text(split: dict[str, int]) -> str:
    return ", ".join(f"{name} {percent}%" for name, percent in split.items())


class Service:
    """The service named by the settings, on the gcloud target given."""

    def __init__(self, gcloud: Gcloud, settings: Settings) -> None:
        self.gcloud = gcloud
        self.settings = settings
        self.name = settings.service

    def describe(self) -> dict[str, Any]:
        try:
            return self.gcloud.json("run", "services", "describe", self.name)
        except GcloudError as exc:
            if "Cannot find service" in str(exc):
                raise RolloutError(f"service {self.name} does not exist on {self.gcloud.target}: deploy "
                                   f"the stable version first (gcloud run deploy {self.name} "
                                   f"--image {self.settings.image}:svc)") from None
            raise

    def revisions(self) -> list[dict[str, Any]]:
        return self.gcloud.json("run", "revisions", "list", "--service", self.name)

    def revision_ready(self, name: str) -> bool:
        try:
            return ready(self.gcloud.json("run", "revisions", "describe", name))
        except GcloudError:
            return False

    def annotate(self, changes: dict[str, Any], service: dict[str, Any] | None = None,
                 split: dict[str, int] | None = None) -> dict[str, Any]:
        """Set (or, with None, remove) annotations with `gcloud run services replace`, and with `split` the
        traffic too, in the same write: the template is sent back unchanged, so no revision is made.
        `service`: a description just read, to save reading it again. Returns the service as written."""
        service = service or self.describe()
        document = {"apiVersion": service.get("apiVersion", "serving.knative.dev/v1"), "kind": "Service",
                    "metadata": {key: service["metadata"][key] for key in ("name", "labels", "annotations")
                                 if key in service["metadata"]},
                    "spec": service["spec"]}
        annotations = document["metadata"].setdefault("annotations", {})
        for key, value in changes.items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = json.dumps(value, separators=(",", ":"))
        if split is not None:
            tags = [{key: value for key, value in target.items() if key != "percent"}
                    for target in service["spec"].get("traffic", []) if target.get("tag")]
            document["spec"] = {**service["spec"], "traffic": [
                {"revisionName": revision, "percent": percent} for revision, percent in split.items() if percent
            ] + tags}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            json.dump(document, handle)  # JSON is YAML
        try:
            return json.loads(self.gcloud.run("run", "services", "replace", handle.name, "--format=json"))
        finally:
            os.unlink(handle.name)

    def set_traffic(self, split: dict[str, int]) -> None:
        text = ",".join(f"{revision}={percent}" for revision, percent in split.items() if percent)
        self.gcloud.run("run", "services", "update-traffic", self.name, "--to-revisions", text)

    def tag(self, revision: str, tag: str) -> None:
        self.gcloud.run("run", "services", "update-traffic", self.name, "--update-tags", f"{tag}={revision}")

    def deploy(self, model: str, image: str, out: TextIO) -> str:
        """Deploy `image` with no traffic behind a tag named for the model; the new revision's name."""
        tag = suggest_tag(model)
        # Invoker access belongs to the service: PUBLIC=1 grants allUsers; otherwise the service keeps
        # the policy it has (private unless someone made it public), never widened or narrowed here.
        flags = ["--no-traffic", "--tag", tag, *(["--allow-unauthenticated"] if self.settings.public else [])]
        if self.settings.service_account:
            flags += ["--service-account", self.settings.service_account]
        print(f"deploying {image} to service {self.name} with no traffic, tag {tag} ...", file=out, flush=True)
        try:
            self.gcloud.run("run", "deploy", self.name, "--image", image, *flags)
        except GcloudError as exc:
            raise RolloutError(f"the candidate {image} did not deploy and received no traffic: {exc}") from None
        service = self.describe()
        tagged = next(t for t in service["status"]["traffic"] if t.get("tag") == tag)
        print(f"candidate {tagged['revisionName']} at {tagged.get('url', '(no tag URL)')}", file=out, flush=True)
        return tagged["revisionName"]

    def revision_for(self, name: str, revisions: list[dict[str, Any]]) -> str:
        """A model name (svc) -> the newest ready revision of image <...>:svc; a revision name as itself."""
        if any(r["metadata"]["name"] == name for r in revisions):
            return name
        candidates = [r for r in revisions if model_of(image_of(r) or "") == name and ready(r)]
        if not candidates:
            known = sorted({model_of(image_of(r) or "") or "?" for r in revisions})
            raise RolloutError(f"no ready revision of model {name!r} in service {self.name} "
                               f"(models deployed: {', '.join(known)}); deploy it first, e.g. make rollout MODEL={name}")
        return max(candidates, key=lambda r: r["metadata"].get("creationTimestamp", ""))["metadata"]["name"]
