"""Per-revision figures from the Cloud Monitoring API, on either target, by one code path.

The endpoint and proxy come from the gcloud configuration in use (`api_endpoint_overrides/monitoring`,
`proxy/*`): Cloud Monitoring itself on Cloud Run (https://monitoring.googleapis.com/, with a bearer
token from gcloud), the local Cloud Run's control plane locally (the same proxy gcloud uses).
Cloud Monitoring publishes Cloud Run's figures a few minutes late: `delay_s` moves every window back
by that much (MONITORING_DELAY_S: 180 on Cloud Run, 0 locally).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iris_tools.google.api import ApiError, GoogleApi
from iris_tools.google.distribution import buckets, percentile
from iris_tools.google.gcloud import Gcloud
from iris_tools.google.timestamps import parse_timestamp, rfc3339

DEFAULT_ENDPOINT = "https://monitoring.googleapis.com/"
# Cloud Run's metrics: request_count (DELTA, INT64, label response_code_class) and request_latencies
# (DELTA, DISTRIBUTION, milliseconds), each per revision_name.
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
# ... and the instances: container/instance_count (GAUGE, INT64, label state: active or idle) and
# container/startup_latencies (DELTA, DISTRIBUTION, milliseconds: how long each new instance took to be ready).
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
STARTUP_LATENCIES = "run.googleapis.com/container/startup_latencies"
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

    @classmethod
    def from_json(cls, document: Any) -> "Figures":
        """Its JSON form (dataclasses.asdict), as a rollout record keeps it; anything else is no figures."""
        if not isinstance(document, dict):
            return cls()
        latency = tuple((float(lower), int(count)) for lower, count in document.get("latency") or ())
        return cls(requests=int(document.get("requests") or 0), errors=int(document.get("errors") or 0),
                   p50_ms=document.get("p50_ms"), p99_ms=document.get("p99_ms"), latency=latency)

    def slower_than(self, limit_ms: float) -> int:
        """Requests certainly slower than `limit_ms`: those in buckets starting at or above it."""
        return sum(int(count) for lower, count in self.latency if lower >= limit_ms)


def _added(total: dict[str, Any] | None, distribution: dict[str, Any], revision: str) -> dict[str, Any]:
    """Two latency distributions of one revision as one (their bucket counts added): only when their buckets are
    the same, else IncompleteFigures."""
    if total is None:
        return {"bucketOptions": distribution["bucketOptions"],
                "bucketCounts": [int(c) for c in distribution.get("bucketCounts", [])]}
    if distribution["bucketOptions"] != total["bucketOptions"]:
        raise IncompleteFigures(f"revision {revision}'s latency series have different buckets "
                                f"({total['bucketOptions']} and {distribution['bucketOptions']}): "
                                f"their counts cannot be added")
    old, new = total["bucketCounts"], [int(c) for c in distribution.get("bucketCounts", [])]
    size = max(len(old), len(new))
    return {"bucketOptions": total["bucketOptions"],
            "bucketCounts": [(old[i] if i < len(old) else 0) + (new[i] if i < len(new) else 0) for i in range(size)]}


@dataclass(frozen=True)
class Point:
    """One revision over one aligned period ending at `at` (epoch seconds)."""

    at: float
    requests: int
    errors: int
    period_s: float
    p50_ms: float | None
    p99_ms: float | None


class Monitoring:
    def __init__(self, api: GoogleApi, project: str, location: str | None = None) -> None:
        """`api`: the Cloud Monitoring API; `location`: the region whose revisions count (None: every region)."""
        self.api = api
        self.project = project
        self.location = location

    @classmethod
    def from_gcloud(cls, gcloud: Gcloud) -> "Monitoring":
        """The endpoint, proxy and credentials of the gcloud configuration in use."""
        return cls(GoogleApi.of(gcloud, "monitoring", DEFAULT_ENDPOINT), gcloud.project, gcloud.region)

    def _series(self, metric: str, service: str | None, start: float, end: float,
                period_s: float | None = None) -> list[dict[str, Any]]:
        """Every series of every page (with `period_s`, its points aligned to that period by ALIGN_DELTA).
        Partial figures are never taken for whole ones: a non-empty `executionErrors` raises IncompleteFigures."""
        where = f'metric.type = "{metric}" AND resource.type = "cloud_run_revision"'
        if service is not None:
            where += f' AND resource.labels.service_name = "{service}"'
        if self.location is not None:
            where += f' AND resource.labels.location = "{self.location}"'
        found: list[dict[str, Any]] = []
        page = ""
        for _ in range(MAX_PAGES):
            query = {"filter": where, "interval.startTime": rfc3339(start), "interval.endTime": rfc3339(end)}
            if period_s:
                query.update({"aggregation.alignmentPeriod": f"{period_s:g}s", "aggregation.perSeriesAligner": "ALIGN_DELTA"})
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

    def _totals(self, service: str | None, start: float, end: float, period_s: float | None,
                key: Callable[[str, dict[str, Any]], Any]) -> dict[Any, list[Any]]:
        """[requests, 5xx, latency distribution] summed over the points that `key(revision, point)` puts together
        (a revision's whole window, or one period of it)."""
        totals: dict[Any, list[Any]] = {}
        for series in self._series(REQUEST_COUNT, service, start, end, period_s):
            revision = series["resource"]["labels"]["revision_name"]
            failed = series["metric"]["labels"].get("response_code_class") == "5xx"
            for point in series.get("points", []):
                entry = totals.setdefault(key(revision, point), [0, 0, None])
                count = int(point["value"]["int64Value"])
                entry[0] += count
                entry[1] += count if failed else 0
        for series in self._series(REQUEST_LATENCIES, service, start, end, period_s):
            revision = series["resource"]["labels"]["revision_name"]
            for point in series.get("points", []):
                entry = totals.setdefault(key(revision, point), [0, 0, None])
                entry[2] = _added(entry[2], point["value"]["distributionValue"], revision)
        return totals

    def figures(self, service: str | None, start: float, end: float) -> dict[str, Figures]:
        """revision -> its requests, 5xx and latency over [start, end] (summed over every point);
        `service` None: every service's revisions."""
        return {revision: Figures(requests, errors,
                                  percentile(distribution, 0.5) if distribution else None,
                                  percentile(distribution, 0.99) if distribution else None,
                                  tuple(buckets(distribution)) if distribution else ())
                for revision, (requests, errors, distribution)
                in self._totals(service, start, end, None, lambda revision, point: revision).items()}

    def instances(self, service: str | None, at: float, lookback_s: float = 180.0) -> dict[str, dict[str, int]]:
        """revision -> its instances by state ("active", "idle") at the newest point at or before `at` (Cloud Run
        samples instance_count once a minute, so its newest point can be that old)."""
        found: dict[str, dict[str, int]] = {}
        for series in self._series(INSTANCE_COUNT, service, at - lookback_s, at):
            points = series.get("points") or []
            if not points:
                continue
            newest = max(points, key=lambda point: parse_timestamp(point["interval"]["endTime"]))
            state = series["metric"].get("labels", {}).get("state", "active")
            counts = found.setdefault(series["resource"]["labels"]["revision_name"], {"active": 0, "idle": 0})
            counts[state] = counts.get(state, 0) + int(newest["value"].get("int64Value", 0))
        return found

    def startups(self, service: str | None, start: float, end: float) -> dict[str, tuple[int, float]]:
        """revision -> (instances started, their mean start-up in ms) over [start, end]: the cold starts."""
        found: dict[str, tuple[int, float]] = {}
        for series in self._series(STARTUP_LATENCIES, service, start, end):
            revision = series["resource"]["labels"]["revision_name"]
            for point in series.get("points", []):
                value = point["value"]["distributionValue"]
                count, mean = int(value.get("count", 0)), float(value.get("mean", 0.0))
                had, had_mean = found.get(revision, (0, 0.0))
                if count:
                    found[revision] = (had + count, (had * had_mean + count * mean) / (had + count))
        return found

    def timeline(self, service: str, start: float, end: float, period_s: float) -> dict[str, list[Point]]:
        """revision -> its figures per `period_s` over [start, end], oldest first (what the console charts). Cloud
        Monitoring takes periods of 60 s and up; the local Cloud Run, 1 s and up."""
        totals = self._totals(service, start, end, period_s,
                              lambda revision, point: (revision, parse_timestamp(point["interval"]["endTime"])))
        timeline: dict[str, list[Point]] = {}
        for (revision, at), (requests, errors, distribution) in sorted(totals.items()):
            timeline.setdefault(revision, []).append(Point(
                at, requests, errors, period_s, percentile(distribution, 0.5) if distribution else None,
                percentile(distribution, 0.99) if distribution else None))
        return timeline
