"""The Cloud Monitoring reader against answers shaped as Cloud Monitoring sends them: pages, execution errors,
series per revision with their own bucket options, and a token renewed before it expires."""

from __future__ import annotations

import urllib.parse

import pytest

from iris_tools.google.api import TOKEN_RENEW_S, GoogleApi
from iris_tools.google.monitoring import REQUEST_COUNT, REQUEST_LATENCIES, IncompleteFigures, Monitoring

EXPONENTIAL = {"exponentialBuckets": {"numFiniteBuckets": 3, "growthFactor": 2, "scale": 1}}


def count_series(revision: str, code_class: str, value: int) -> dict:
    return {"metric": {"type": REQUEST_COUNT, "labels": {"response_code_class": code_class}},
            "resource": {"labels": {"revision_name": revision}},
            "points": [{"value": {"int64Value": str(value)}}]}


def latency_series(revision: str, counts: list[int], options: dict = EXPONENTIAL) -> dict:
    return {"metric": {"type": REQUEST_LATENCIES}, "resource": {"labels": {"revision_name": revision}},
            "points": [{"value": {"distributionValue": {"count": str(sum(counts)), "bucketOptions": options,
                                                         "bucketCounts": [str(c) for c in counts]}}}]}


class FakeApi(GoogleApi):
    """Answers from a list of pages per metric; records each query."""

    def __init__(self, pages: dict[str, list[dict]]) -> None:
        super().__init__("http://monitoring.test/")
        self.pages = pages
        self.queries: list[dict] = []

    def call(self, method: str, path: str, body=None) -> dict:
        query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).items()}
        self.queries.append(query)
        metric = REQUEST_COUNT if REQUEST_COUNT in query["filter"] else REQUEST_LATENCIES
        index = int(query.get("pageToken") or 0)
        page = dict(self.pages[metric][index])
        if index + 1 < len(self.pages[metric]):
            page["nextPageToken"] = str(index + 1)
        return page


def test_every_page_is_read_and_the_filter_names_the_region() -> None:
    """Broken on purpose (first page only): the candidate's 5xx on page 2 were never counted."""
    api = FakeApi({REQUEST_COUNT: [{"timeSeries": [count_series("cand", "2xx", 90)]},
                                   {"timeSeries": [count_series("cand", "5xx", 10)]}],
                   REQUEST_LATENCIES: [{"timeSeries": [latency_series("cand", [0, 50, 40, 10, 0])]},
                                       {"timeSeries": [latency_series("cand", [0, 0, 0, 0, 0])]}]})
    figures = Monitoring(api, "p", "us-central1").figures("iris", 0, 60)["cand"]
    assert (figures.requests, figures.errors) == (100, 10)
    assert all('resource.labels.location = "us-central1"' in q["filter"] for q in api.queries)


def test_execution_errors_mean_the_figures_are_incomplete() -> None:
    api = FakeApi({REQUEST_COUNT: [{"timeSeries": [count_series("cand", "2xx", 90)],
                                    "executionErrors": [{"code": 4, "message": "deadline exceeded"}]}],
                   REQUEST_LATENCIES: [{}]})
    with pytest.raises(IncompleteFigures, match="deadline exceeded"):
        Monitoring(api, "p").figures("iris", 0, 60)


def test_latency_series_with_different_buckets_are_not_added() -> None:
    other = {"explicitBuckets": {"bounds": [1, 2, 4]}}
    api = FakeApi({REQUEST_COUNT: [{"timeSeries": [count_series("cand", "2xx", 20)]}],
                   REQUEST_LATENCIES: [{"timeSeries": [latency_series("cand", [0, 10, 0, 0, 0]),
                                                       latency_series("cand", [0, 10, 0, 0], other)]}]})
    with pytest.raises(IncompleteFigures, match="different buckets"):
        Monitoring(api, "p").figures("iris", 0, 60)


def test_the_token_is_asked_for_again_before_an_hour_is_out() -> None:
    """Broken on purpose (the token asked for once, as before): the second call sent the expired token."""
    now = [0.0]
    issued = iter(["first", "second"])
    api = GoogleApi("http://x/", token=lambda: next(issued), clock=lambda: now[0])
    assert api.token() == "first"
    now[0] = TOKEN_RENEW_S - 1
    assert api.token() == "first"
    now[0] = TOKEN_RENEW_S + 1
    assert api.token() == "second"


def timed(series: dict, ends: list[str]) -> dict:
    """`series` with one copy of its point per end time (each ALIGN_DELTA period's)."""
    (point,) = series["points"]
    return {**series, "points": [{**point, "interval": {"endTime": end}} for end in ends]}


def test_the_timeline_asks_for_aligned_points_and_keeps_them_apart_by_time_and_revision() -> None:
    """What the console charts: per revision, per period, requests, 5xx, p50 and p99. Broken on purpose (points
    keyed by revision only): one point per revision, the sum of all periods."""
    ends = ["2026-12-02T10:01:00Z", "2026-12-02T10:02:00Z"]
    api = FakeApi({REQUEST_COUNT: [{"timeSeries": [timed(count_series("a", "2xx", 60), ends),
                                                   timed(count_series("a", "5xx", 6), ends[1:]),
                                                   timed(count_series("b", "2xx", 30), ends[:1])]}],
                   REQUEST_LATENCIES: [{"timeSeries": [timed(latency_series("a", [0, 60, 0, 0, 0]), ends[:1]),
                                                       timed(latency_series("a", [0, 0, 60, 6, 0]), ends[1:])]}]})
    timeline = Monitoring(api, "p").timeline("iris", 0, 120, 60)
    assert all(q["aggregation.alignmentPeriod"] == "60s" and q["aggregation.perSeriesAligner"] == "ALIGN_DELTA"
               for q in api.queries)
    first, second = timeline["a"]
    assert (first.requests, first.errors, first.p50_ms, second.requests, second.errors) == (60, 0, 2.0, 66, 6)
    assert second.p50_ms == 4.0 and second.p99_ms == 8.0 and second.at - first.at == 60
    (only,) = timeline["b"]
    assert (only.requests, only.p50_ms) == (30, None)
