"""Cloud Logging's entries:list (what `gcloud logging read` calls), on either target, by one code path: the endpoint
and proxy of the gcloud configuration in use (`api_endpoint_overrides/logging`), Cloud Logging itself on Cloud Run,
the local Cloud Run's answer from the revisions' own logs locally. Read straight from the API: no gcloud start."""

from __future__ import annotations

from typing import Any

from iris_tools.google.api import GoogleApi, opener_for
from iris_tools.google.gcloud import Gcloud
from iris_tools.google.timestamps import rfc3339

DEFAULT_ENDPOINT = "https://logging.googleapis.com/"
PAGE_SIZE = 1000


class Logging:
    def __init__(self, api: GoogleApi, project: str) -> None:
        self.api = api
        self.project = project

    @classmethod
    def from_gcloud(cls, gcloud: Gcloud) -> "Logging":
        endpoint = gcloud.property("api_endpoint_overrides/logging") or DEFAULT_ENDPOINT
        return cls(GoogleApi(endpoint, opener_for(gcloud), gcloud.access_token), gcloud.project)

    def entries(self, where: str, start: float, end: float | None, limit: int) -> list[dict[str, Any]]:
        """Entries matching `where` between `start` and `end` (epoch seconds), newest first, at most `limit`."""
        span = f'timestamp >= "{rfc3339(start)}"' + (f' AND timestamp <= "{rfc3339(end)}"' if end else "")
        body: dict[str, Any] = {"resourceNames": [f"projects/{self.project}"], "filter": f"{where} AND {span}",
                                "orderBy": "timestamp desc", "pageSize": min(PAGE_SIZE, limit)}
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            page = self.api.call("POST", "v2/entries:list", body)
            found.extend(page.get("entries", []))
            if not page.get("nextPageToken"):
                break
            body["pageToken"] = page["nextPageToken"]
        return found[:limit]
