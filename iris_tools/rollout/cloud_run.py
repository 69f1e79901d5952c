"""One Cloud Run service as the rollout tools read and write it, on either target.

Reading: the service and its revisions, through the Admin API. Writing: `write`, the one way traffic and the
rollout's annotations change: one PUT carrying the resourceVersion read (the template sent back unchanged: no new
revision), so a crash leaves a split that was set, never a half-applied one, and a change by anyone else in between
is never overwritten. A candidate is deployed with no traffic behind a tag, through gcloud (as a user would).
"""

from __future__ import annotations

import copy
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from iris_tools.google.api import ApiError, GoogleApi
from iris_tools.google.gcloud import Gcloud, GcloudError
from iris_tools.google.names import suggest_tag
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.records import Annotations, Lock, RolledBack, annotation_changes
from iris_tools.rollout.settings import RolloutSettings
from iris_tools.rollout.split import Split

MAX_PAGES = 50
T = TypeVar("T")


def model_of(image: str) -> str | None:
    """`iris:svc`, `us-docker.pkg.dev/p/r/iris:svc` or `iris:svc@sha256:...` -> `svc`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


def image_of(revision: dict[str, Any]) -> str | None:
    return (revision.get("spec", {}).get("containers") or [{}])[0].get("image")


def digest_of(revision: dict[str, Any]) -> str | None:
    """The image digest a revision runs (`...@sha256:...`): what a rolled-back version is known by."""
    return revision.get("status", {}).get("imageDigest")


def name_of(resource: dict[str, Any]) -> str:
    return resource["metadata"]["name"]


def condition(resource: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    """A service's or revision's status condition of `kind` ({} when it has none)."""
    return next((c for c in resource.get("status", {}).get("conditions", []) if c.get("type") == kind), {})


def ready(revision: dict[str, Any]) -> bool:
    return condition(revision).get("status") == "True"


def tag_urls(service: dict[str, Any]) -> dict[str, str]:
    """revision -> the URL of a tag that names it."""
    return {t.get("revisionName"): t.get("url") for t in service["status"].get("traffic", []) if t.get("tag")}


def tags_of(service: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """revision -> the tags that name it, each with its URL."""
    found: dict[str, list[dict[str, str]]] = {}
    for target in service["status"].get("traffic", []):
        if target.get("tag"):
            found.setdefault(target.get("revisionName"), []).append({"tag": target["tag"], "url": target.get("url", "")})
    return found


class Conflict(RolloutError):
    """A write refused because the service changed since it was read (its resourceVersion moved on)."""


ATTEMPTS = 5  # a write that lost a race (with a rollout's own step, say) is read and made again


def retrying(attempt: Callable[[], T], gave_up: str) -> T:
    """`attempt()` (a read, then a write with the version read) until it does not meet a Conflict, at most ATTEMPTS
    times; then RolloutError(gave_up)."""
    for _ in range(ATTEMPTS):
        try:
            return attempt()
        except Conflict:
            continue
    raise RolloutError(gave_up)


class CloudRunService:
    """The service named by the settings, on the gcloud target given. Reads and the rollout's own writes go
    to the Admin API directly (no gcloud start each), every write carrying the resourceVersion it read: a
    change made by anyone in between makes the write fail (Conflict), never silently overwritten."""

    def __init__(self, gcloud: Gcloud, settings: RolloutSettings, api: GoogleApi | None = None) -> None:
        self.gcloud = gcloud
        self.settings = settings
        self.name = settings.service
        self.api = api or GoogleApi.of(gcloud, "run", f"https://{gcloud.region}-run.googleapis.com/")
        self.path = f"apis/serving.knative.dev/v1/namespaces/{gcloud.project}/services/{self.name}"
        self.revisions_path = f"apis/serving.knative.dev/v1/namespaces/{gcloud.project}/revisions"

    def describe(self) -> dict[str, Any]:
        try:
            return self.api.call("GET", self.path)
        except ApiError as exc:
            if exc.status == 404:
                raise RolloutError(f"service {self.name} does not exist on {self.gcloud.target}: deploy "
                                   f"the stable version first (gcloud run deploy {self.name} "
                                   f"--image {self.settings.image}:svc)") from None
            raise

    def revisions(self) -> list[dict[str, Any]]:
        """The service's revisions, newest first, as `gcloud run revisions list --service` reads them (every page)."""
        query = {"labelSelector": f"serving.knative.dev/service = {self.name}"}
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            answer = self.api.call("GET", f"{self.revisions_path}?{urllib.parse.urlencode(query)}")
            found.extend(answer.get("items", []))
            query["continue"] = (answer.get("metadata") or {}).get("continue") or ""
            if not query["continue"]:
                break
        return sorted(found, key=lambda r: r["metadata"].get("creationTimestamp", ""), reverse=True)

    def revision_ready(self, name: str) -> bool:
        try:
            return ready(self.api.call("GET", f"{self.revisions_path}/{name}"))
        except ApiError:
            return False

    def execution_running(self, name: str) -> bool | None:
        """Whether Cloud Run job execution `name` still runs (its Completed condition neither True nor False); False
        when it does not exist; None when the jobs API cannot say."""
        try:
            found = self.api.call("GET", f"apis/run.googleapis.com/v1/namespaces/{self.gcloud.project}/executions/"
                                         f"{urllib.parse.quote(name, safe='')}")
        except ApiError as exc:
            return False if exc.status == 404 else None
        return condition(found, "Completed").get("status") not in ("True", "False")

    def annotations(self, service: dict[str, Any] | None = None) -> Annotations:
        return Annotations.of(service or self.describe())

    def write(self, service: dict[str, Any], *, split: Split | None = None, lock: Lock | None | bool = False,
              history: list[str] | None = None, rolled_back: list[RolledBack] | None = None,
              traffic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The one write: the split (when given; or `traffic`, spec.traffic as it is to be) and the rollout's
        annotations (lock=None removes the lock), in one PUT carrying the resourceVersion of `service`, a
        description just read. If the service changed since, Conflict and nothing written. The template is sent
        back unchanged, so no revision is made. Returns the service once the write is in effect (Ready at its
        generation)."""
        metadata = {key: service["metadata"][key] for key in ("name", "namespace", "labels", "annotations",
                                                               "resourceVersion") if key in service["metadata"]}
        document = {"apiVersion": service.get("apiVersion", "serving.knative.dev/v1"), "kind": "Service",
                    "metadata": copy.deepcopy(metadata), "spec": copy.deepcopy(service["spec"])}
        annotations = document["metadata"].setdefault("annotations", {})
        annotations.pop("run.googleapis.com/urls", None)
        for key, text in annotation_changes(lock=lock, history=history, rolled_back=rolled_back).items():
            if text is None:
                annotations.pop(key, None)
            else:
                annotations[key] = text
        if split is not None:
            document["spec"]["traffic"] = split.targets(service)
        elif traffic is not None:
            document["spec"]["traffic"] = traffic
        try:
            written = self.api.call("PUT", self.path, document)
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"service {self.name} was changed by someone else since it was read "
                               f"({exc}); nothing was written") from None
            raise
        return self._settled(written)

    def _settled(self, service: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
        """Poll, as gcloud does, until the service's status is of its generation and Ready is True (in effect)
        or False (refused: RolloutError with Cloud Run's message)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = service.get("status", {})
            if status.get("observedGeneration") == service["metadata"].get("generation"):
                ready_condition = condition(service)
                if ready_condition.get("status") == "True":
                    return service
                if ready_condition.get("status") == "False":
                    raise RolloutError(f"service {self.name} is not ready after the change: "
                                       f"{ready_condition.get('message', '')}")
            if time.monotonic() > deadline:
                raise RolloutError(f"service {self.name} was not ready {timeout_s:g} s after the change")
            time.sleep(0.5)
            service = self.describe()

    def tag(self, revision: str, tag: str) -> None:
        if self.gcloud.can_run:
            self.gcloud.run("run", "services", "update-traffic", self.name, "--update-tags", f"{tag}={revision}")
        else:
            self._retag(tag, revision)

    def untag(self, tag: str) -> None:
        if self.gcloud.can_run:
            self.gcloud.run("run", "services", "update-traffic", self.name, "--remove-tags", tag)
        else:
            self._retag(tag, None)

    def _retag(self, tag: str, revision: str | None) -> None:
        """Where there is no gcloud (a rollout job): `tag` moved to `revision` (None: removed) through the Admin API,
        the shares untouched, one write with the version read (made again if it loses a race)."""
        def attempt() -> None:
            service = self.describe()
            targets = []
            for target in copy.deepcopy(service["spec"].get("traffic", [])):
                if target.get("tag") == tag:
                    target.pop("tag")
                    if not target.get("percent"):
                        continue  # a target that was only this tag
                targets.append(target)
            if revision is not None:
                targets.append({"revisionName": revision, "percent": 0, "tag": tag})
            self.write(service, traffic=targets)

        retrying(attempt, f"could not change tag {tag} of service {self.name}: it kept changing")

    def deploy(self, model: str, image: str, say: Callable[[str], None]) -> str:
        """Deploy `image` with no traffic behind a tag named for the model; the new revision's name."""
        tag = suggest_tag(model)
        # Invoker access belongs to the service: PUBLIC=1 grants allUsers; otherwise the service keeps
        # the policy it has (private unless someone made it public), never widened or narrowed here.
        flags = ["--no-traffic", "--tag", tag, *(["--allow-unauthenticated"] if self.settings.public else [])]
        if self.settings.service_account:
            flags += ["--service-account", self.settings.service_account]
        say(f"deploying {image} to service {self.name} with no traffic, tag {tag} ...")
        try:
            self.gcloud.run("run", "deploy", self.name, "--image", image, *flags)
        except GcloudError as exc:
            raise RolloutError(f"the candidate {image} did not deploy and received no traffic: {exc}") from None
        service = self.describe()
        tagged = next(t for t in service["status"]["traffic"] if t.get("tag") == tag)
        say(f"candidate {tagged['revisionName']} at {tagged.get('url', '(no tag URL)')}")
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
