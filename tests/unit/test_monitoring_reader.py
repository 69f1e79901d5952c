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
