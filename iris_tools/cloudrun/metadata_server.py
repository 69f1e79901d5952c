"""The metadata server a Cloud Run task asks for its identity, served by the local Cloud Run on its API port.

A task gets GCE_METADATA_HOST and GCE_METADATA_IP naming this port, so google-auth's default credentials find a
"Compute Engine" here as they find Cloud Run's metadata server there: the ping (`GET /` with `Metadata-Flavor:
Google`, answered with that header), the project, the region, the service account's info, an access token and
an identity token. Every request must carry `Metadata-Flavor: Google` (403 otherwise, as Google's does).

Access tokens are made here, one per request, valid TOKEN_LIFETIME_S, and are what this local Cloud Run's own APIs
(Admin, Monitoring, Logging) accept as `Authorization: Bearer`: a request carrying any other bearer token is refused
with 401 (a request carrying none is gcloud's, whose configuration here disables credentials). An identity token is
the token private local services take (what `make emulator-token` prints), whatever the audience.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_LIFETIME_S = 3600
ROOT = "/computeMetadata/v1/"
FLAVOR = ("Metadata-Flavor", "Google")
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@dataclass(frozen=True)
class MetadataAnswer:
    status: int
    body: bytes
    content_type: str = "application/text"


def is_metadata_request(path: str, flavor: str | None) -> bool:
    """What the API port hands to the metadata server: its paths, and the ping (`/` with the flavor header)."""
    return path.startswith("/computeMetadata/") or (path in ("", "/") and flavor is not None)


class MetadataServer:
    def __init__(self, project: Callable[[], str], project_number: Callable[[], int], region: Callable[[], str],
                 identity_token: Callable[[], str], clock: Callable[[], float] = time.time) -> None:
        self.project = project
        self.project_number = project_number
        self.region = region
        self.identity_token = identity_token
        self.clock = clock
        self._tokens: dict[str, float] = {}  # access token -> when it expires
        self._lock = threading.Lock()

    @property
    def email(self) -> str:
        return f"{self.project_number()}-compute@developer.gserviceaccount.com"

    def answer(self, target: str, flavor: str | None) -> MetadataAnswer:
        if flavor != FLAVOR[1]:
            return MetadataAnswer(403, b"Missing required header: Metadata-Flavor: Google\n")
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(parts.query).items()}
        if path in ("", "/"):
            return MetadataAnswer(200, b"computeMetadata/\n")
        if not path.startswith(ROOT):
            return MetadataAnswer(404, b"Not Found\n")
        key = path[len(ROOT):].rstrip("/")
        account = "instance/service-accounts/default"
        texts = {"project/project-id": self.project(), "project/numeric-project-id": str(self.project_number()),
                 "instance/region": f"projects/{self.project_number()}/regions/{self.region()}",
                 f"{account}/email": self.email, f"{account}/scopes": "\n".join(SCOPES) + "\n",
                 "universe/universe-domain": "googleapis.com"}
        if key in texts:
            return MetadataAnswer(200, texts[key].encode())
        if key == account or key == "instance/service-accounts/" + self.email:
            info = {"aliases": ["default"], "email": self.email, "scopes": SCOPES}
            return MetadataAnswer(200, json.dumps(info).encode(), "application/json")
        if key == f"{account}/token":
            token = self.issue()
            return MetadataAnswer(200, json.dumps({"access_token": token, "expires_in": TOKEN_LIFETIME_S,
                                                   "token_type": "Bearer"}).encode(), "application/json")
        if key == f"{account}/identity":
            if not query.get("audience"):
                return MetadataAnswer(400, b"non-empty audience parameter required\n")
            return MetadataAnswer(200, self.identity_token().encode())
        return MetadataAnswer(404, b"Not Found\n")

    def issue(self) -> str:
        token = "ya29.local-" + secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._tokens = {t: expiry for t, expiry in self._tokens.items() if expiry > now}
            self._tokens[token] = now + TOKEN_LIFETIME_S
        return token

    def accepts(self, authorization: str | None) -> bool:
        """Whether an API request may go on: no credentials (gcloud here), or a token made here, not expired."""
        if not authorization:
            return True
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            expiry = self._tokens.get(token.strip())
        return expiry is not None and expiry > self.clock()
