"""The rollout's access to Google's APIs inside a Cloud Run job, where there is no gcloud: the job's own service
account, through Google's default credentials (google-auth asks the metadata server), never a token pasted in.

It answers what the tools ask of `Gcloud` (gcloud.py) for reading and writing through the APIs: the target, the
project and region, a configuration property, an access token and an identity token. It runs no gcloud command:
`run` refuses, naming what the job cannot do (deploy a candidate: `make rollout DETACH=1` deploys it before the job
starts, with the operator's gcloud).

Properties come from the environment under gcloud's own names (CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN,
CLOUDSDK_PROXY_ADDRESS, ...), so a job run by the local Cloud Run reaches its APIs as gcloud does there; on Cloud Run
none is set and Google's endpoints are used.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
import urllib.request
from typing import Any

from iris_tools.google.gcloud import GcloudError

METADATA_DEFAULT_HOST = "metadata.google.internal"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def property_variable(name: str) -> str:
    """The environment variable gcloud reads a property from: "api_endpoint_overrides/run" is
    CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN."""
    return "CLOUDSDK_" + name.replace("/", "_").upper()


class ServiceAccount:
    """Google's default credentials, with the few things the tools read of a gcloud configuration."""

    can_run = False

    def __init__(self, target: str, project: str | None = None, region: str | None = None,
                 environ: dict[str, str] | None = None) -> None:
        import google.auth
        import google.auth.exceptions

        self.target = target
        self.environ = dict(os.environ if environ is None else environ)
        try:
            self._credentials, found_project = google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise GcloudError(f"no Google credentials in this job (google-auth: {exc}); a Cloud Run job has its "
                              f"service account's through the metadata server") from None
        self.project = project or found_project or self.metadata("project/project-id")
        self.region = region or self.metadata("instance/region").rsplit("/", 1)[-1]
        self.audience: str | None = None  # the service's URL, once known: what an identity token is for
        self._lock = threading.Lock()

    def property(self, name: str) -> str | None:
        """A gcloud property as its environment variable (property_variable) holds it."""
        found = self.environ.get(property_variable(name), "").strip()
        return found or None

    def access_token(self) -> str | None:
        """A fresh access token for the job's service account (google-auth renews it from the metadata server)."""
        import google.auth.transport.requests

        with self._lock:
            if not self._credentials.valid:
                self._credentials.refresh(google.auth.transport.requests.Request())
            return self._credentials.token

    def identity_token(self) -> str:
        """An identity token for the service (a private one's invoker check), from the metadata server."""
        audience = self.audience or f"https://{self.region}-run.googleapis.com/"
        return self.metadata("instance/service-accounts/default/identity", {"audience": audience,
                                                                              "format": "full"})

    def metadata(self, path: str, query: dict[str, str] | None = None) -> str:
        host = self.environ.get("GCE_METADATA_HOST") or self.environ.get("GCE_METADATA_ROOT") or METADATA_DEFAULT_HOST
        url = f"http://{host}/computeMetadata/v1/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the metadata server is never proxied
        try:
            with opener.open(request, timeout=10) as response:
                return response.read().decode().strip()
        except OSError as exc:
            raise GcloudError(f"the metadata server did not answer {path} ({exc})") from None

    def run(self, *args: str, timeout: float = 0) -> Any:
        raise GcloudError(f"`gcloud {' '.join(args[:3])}` cannot run in a rollout job (its image has no gcloud): "
                          f"`make rollout DETACH=1` deploys the candidate first and hands the job its revision")

    def json(self, *args: str) -> Any:
        return self.run(*args)
