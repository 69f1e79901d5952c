"""Per-revision figures from the Cloud Monitoring API, on either target, by one code path.

The endpoint and proxy come from the gcloud configuration in use (`api_endpoint_overrides/monitoring`,
`proxy/*`): Cloud Monitoring itself on Cloud Run (https://monitoring.googleapis.com/, with a bearer
token from gcloud), the local Cloud Run's control plane locally (the same proxy gcloud uses).
Cloud Monitoring publishes Cloud Run's figures a few minutes late: `delay_s` moves every window back
by that much (MONITORING_DELAY_S: 180 on Cloud Run, 0 locally).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from iris_tools.google.api import ApiError, GoogleApi, opener_for
from iris_tools.google.distribution import buckets, percentile
from iris_tools.google.gcloud import Gcloud
from iris_tools.google.timestamps import rfc3339

DEFAULT_ENDPOINT = "https://monitoring.googleapis.com/"
# Cloud Run's metrics: request_count (DELTA, INT64, label response_code_class) and request_latencies
# (DELTA, DISTRIBUTION, milliseconds), each per revision_name.
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MAX_PAGES = 100


class IncompleteFigures(ApiError):
    """Figures that came back partial (execution errors, buckets that do not add up): never judged as whole."""

    def __init__(self, message: str) -> None:
        super().__init__(200, message)


@dataclass(frozen=True)
class Figures:
    """One revision over one window. `latency`: (lower bound ms, requests) for each bucket holding any."""

    requests: int = 0
    errors: int = 0  # 5xx
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency: tuple[tuple[float, int], ...] = ()

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def slower_than(self, limit_ms: float) -> int:
        """Requests certainly slower than `limit_ms`: those in buckets starting at or above it."""
        return sum(int(count) for lower, count in self.latency if lower >= limit_ms)


class Monitoring:
    def __init__(self, api: GoogleApi, project: str, location: str | None = None) -> None:
        """`api`: the Cloud Monitoring API; `location`: the region whose revisions count (None: every region)."""
        self.api = api
        self.project = project
        self.location = location

    @classmethod
    def from_gcloud(cls, gcloud: Gcloud) -> "Monitoring":
        """The endpoint, proxy and credentials of the gcloud configuration in use."""
        endpoint = gcloud.property("api_endpoint_overrides/monitoring") or DEFAULT_ENDPOINT
        return cls(GoogleApi(endpoint, opener_for(gcloud), gcloud.access_token), gcloud.project, gcloud.region)

    def _series(self, metric: str, service: str | None, start: float, end: float) -> list[dict[str, Any]]:
        """Every series of every page. Partial figures are never taken for whole ones: a non-empty
        `executionErrors` raises IncompleteFigures."""
        where = f'metric.type = "{metric}" AND resource.type = "cloud_run_revision"'
        if service is not None:
            where += f' AND resource.labels.service_name = "{service}"'
        if self.location is not None:
            where += f' AND resource.labels.location = "{self.location}"'
        found: list[dict[str, Any]] = []
        page = ""
        for _ in range(MAX_PAGES):
            query = {"filter": where, "interval.startTime": rfc3339(start), "interval.endTime": rfc3339(end)}
            if page:
                query["pageToken"] = page
            answer = self.api.call("GET", f"v3/projects/{self.project}/timeSeries?{urllib.parse.urlencode(query)}")
            if answer.get("executionErrors"):
                raise IncompleteFigures(f"Cloud Monitoring answered {metric} with errors: {answer['executionErrors']}")
            found.extend(answer.get("timeSeries", []))
            page = answer.get("nextPageToken") or ""
            if not page:
                return found
        raise IncompleteFigures(f"more than {MAX_PAGES} pages of {metric}")

    def figures(self, service: str | None, start: float, end: float) -> dict[str, Figures]:
        """revision -> its requests, 5xx and latency over [start, end] (summed over every point);
        `service` None: every service's revisions."""
        counts: dict[str, list[int]] = {}
        for series in self._series(REQUEST_COUNT, service, start, end):
            revision = series["resource"]["labels"]["revision_name"]
            total = sum(int(point["value"]["int64Value"]) for point in series.get("points", []))
            entry = counts.setdefault(revision, [0, 0])
            entry[0] += total
            if series["metric"]["labels"].get("response_code_class") == "5xx":
                entry[1] += total
        latencies: dict[str, dict[str, Any]] = {}
        for series in self._series(REQUEST_LATENCIES, service, start, end):
            revision = series["resource"]["labels"]["revision_name"]
            for point in series.get("points", []):
                distribution = point["value"]["distributionValue"]
                merged = latencies.setdefault(revision, {"bucketOptions": distribution["bucketOptions"],
                                                         "bucketCounts": []})
                if distribution["bucketOptions"] != merged["bucketOptions"]:
                    raise IncompleteFigures(f"revision {revision}'s latency series have different buckets "
                                            f"({merged['bucketOptions']} and {distribution['bucketOptions']}): "
                                            f"their counts cannot be added")
                counts_now = [int(c) for c in distribution.get("bucketCounts", [])]
                old = [int(c) for c in merged["bucketCounts"]]
                size = max(len(old), len(counts_now))
                merged["bucketCounts"] = [(old[i] if i < len(old) else 0) + (counts_now[i] if i < len(counts_now)
                                                                              else 0) for i in range(size)]
        figures = {}
        for revision in set(counts) | set(latencies):
            requests, errors = counts.get(revision, [0, 0])
            distribution = latencies.get(revision)
            figures[revision] = Figures(requests, errors,
                                        percentile(distribution, 0.5) if distribution else None,
                                        percentile(distribution, 0.99) if distribution else None,
                                        tuple(buckets(distribution)) if distribution else ())
        return figures
