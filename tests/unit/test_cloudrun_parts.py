"""The local Cloud Run's pure parts: names, Google error bodies, images, figures from Envoy's counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iris_tools import environment
from iris_tools.cloudrun import metrics
from iris_tools.cloudrun.errors import InvalidArgument, ResourceNotFound
from iris_tools.cloudrun.metrics import Sampler, parse_prometheus, time_series
from iris_tools.cloudrun.name_checks import check_revision_name, check_service_name, check_tag
from iris_tools.cloudrun.resources import model_of_image
from iris_tools.google.distribution import buckets, percentile
from iris_tools.google.monitoring import REQUEST_COUNT, REQUEST_LATENCIES
from iris_tools.local.state import write_atomically


@pytest.mark.parametrize("tag", ["candidate", "lin-svc", "v2", "a"])
def test_dns_label_tags_are_accepted(tag: str) -> None:
    assert check_tag(tag, "spec.traffic[0].tag") == tag


@pytest.mark.parametrize("tag, suggestion", [("lin_svc", "lin-svc"), ("Stable", "stable"), ("2nd", "t-2nd"),
                                             ("-x", "x"), ("a" * 60, "a" * 46)])
def test_tags_that_are_not_dns_labels_are_refused_with_a_valid_suggestion(tag: str, suggestion: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_tag(tag, "spec.traffic[1].tag")
    body = caught.value.body()["error"]
    assert (body["code"], body["status"]) == (400, "INVALID_ARGUMENT")
    violation = body["details"][0]["fieldViolations"][0]
    assert violation["field"] == "spec.traffic[1].tag" and repr(suggestion) in violation["description"]
    check_tag(suggestion, "x")  # the suggestion itself is valid


@pytest.mark.parametrize("name", ["Iris", "iris_svc", "-iris", "iris-", "1iris", "../etc", "a" * 50, "", None, 7])
def test_service_names_that_cloud_run_refuses_are_refused(name) -> None:
    with pytest.raises(InvalidArgument, match="service name"):
        check_service_name(name)


def test_revision_names_are_dns_labels_that_begin_with_the_service_name() -> None:
    assert check_revision_name("iris-v2", "iris", "f") == "iris-v2"
    with pytest.raises(InvalidArgument, match="must begin with the service name"):
        check_revision_name("other-v2", "iris", "f")
    with pytest.raises(InvalidArgument, match="must be a DNS label"):
        check_revision_name("iris-V2", "iris", "f")


def test_an_error_without_a_field_has_no_details() -> None:
    assert ResourceNotFound("gone").body() == {"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}


@pytest.mark.parametrize("image, model", [("iris:svc", "svc"), ("us-docker.pkg.dev/p/r/iris:lin_svc", "lin_svc"),
                                          ("iris:svc@sha256:abc", "svc"), ("iris", None), ("localhost:5000/iris", None)])
def test_the_model_is_the_image_tag(image: str, model: str | None) -> None:
    assert model_of_image(image) == model


PROMETHEUS = """\
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="iris-00001-abc"} %d
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="iris-00001-abc"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="iris-00001-abc",le="0.5"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="iris-00001-abc",le="1"} %d
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="iris-00001-abc",le="+Inf"} %d
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="iris-00001-abc"} %d
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="iris-00001-abc"} %d
envoy_server_live{} 1
"""


def test_envoy_counters_become_per_revision_readings() -> None:
    readings = parse_prometheus(PROMETHEUS % (90, 10, 80, 95, 100, 70, 100), at=5.0)
    reading = readings["iris-00001-abc"]
    assert reading.by_class == {"2xx": 90, "5xx": 10}
    assert reading.buckets == {0.5: 80, 1.0: 95} and reading.latency_count == 100


def test_a_window_reports_what_happened_inside_it_in_cloud_monitorings_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "LATENCY_BUCKETS_MS", [0.5, 1])
    texts = iter([PROMETHEUS % (90, 10, 80, 95, 100, 70, 100), PROMETHEUS % (190, 12, 100, 195, 202, 270, 202)])
    sampler = Sampler(lambda: next(texts))
    clock = iter([100.0, 160.0])
    monkeypatch.setattr(metrics.time, "time", lambda: next(clock))
    sampler.sample()
    sampler.sample()
    service_of = {"iris-00001-abc": "iris"}
    counts = time_series(sampler, REQUEST_COUNT, 100.0, 160.0, service_of, "p", "us-central1")
    by_class = {s["metric"]["labels"]["response_code_class"]: int(s["points"][0]["value"]["int64Value"]) for s in counts}
    assert by_class == {"2xx": 100, "5xx": 2}
    assert counts[0]["resource"]["labels"]["revision_name"] == "iris-00001-abc"
    latency = time_series(sampler, REQUEST_LATENCIES, 100.0, 160.0, service_of, "p", "us-central1")[0]
    distribution = latency["points"][0]["value"]["distributionValue"]
    assert distribution["count"] == "102" and distribution["bucketCounts"] == ["20", "80", "2"]
    assert percentile(distribution, 0.5) == 1.0 and percentile(distribution, 0.99) == float("inf")
    assert percentile({"bucketCounts": []}, 0.5) is None


def test_a_revision_whose_cluster_went_away_keeps_the_requests_it_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision given 0% loses its Envoy cluster, and its counters with it; as Cloud Monitoring keeps its points, a
    window over its last requests still has them (a rollout's 100% step judges against the stable revision's figures
    over the rollout). Broken on purpose (a revision only as long as Envoy counts it): it had no figures at all."""
    monkeypatch.setattr(metrics, "LATENCY_BUCKETS_MS", [0.5, 1])
    other = PROMETHEUS.replace("iris-00001-abc", "iris-00002-def").replace("envoy_server_live{} 1\n", "")
    texts = iter([PROMETHEUS % (0, 0, 0, 0, 0, 0, 0) + other % (0, 0, 0, 0, 0, 0, 0),
                  PROMETHEUS % (50, 0, 40, 50, 50, 30, 50) + other % (10, 0, 10, 10, 10, 5, 10),
                  other % (30, 0, 30, 30, 30, 15, 30), other % (40, 0, 40, 40, 40, 20, 40)])
    clock = iter([100.0, 110.0, 120.0, 130.0])
    monkeypatch.setattr(metrics.time, "time", lambda: next(clock))
    sampler = Sampler(lambda: next(texts))
    for _ in range(4):
        sampler.sample()
    service_of = {"iris-00001-abc": "iris", "iris-00002-def": "iris"}
    counts = time_series(sampler, REQUEST_COUNT, 100.0, 130.0, service_of, "p", "r")
    assert {s["resource"]["labels"]["revision_name"]: int(s["points"][0]["value"]["int64Value"]) for s in counts} == {
        "iris-00001-abc": 50, "iris-00002-def": 40}
    latency = time_series(sampler, REQUEST_LATENCIES, 100.0, 130.0, service_of, "p", "r")
    assert {s["resource"]["labels"]["revision_name"] for s in latency} == {"iris-00001-abc", "iris-00002-def"}
    assert time_series(sampler, REQUEST_COUNT, 120.0, 130.0, service_of, "p", "r")[0]["resource"]["labels"][
        "revision_name"] == "iris-00002-def"  # nothing new from the revision gone: no series


def test_an_atomic_write_that_fails_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, json.dumps({"version": 1}))

    def broken_replace(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr("iris_tools.local.state.os.replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, json.dumps({"version": 2}))
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


def test_percentiles_read_cloud_monitorings_exponential_buckets_too() -> None:
    # Cloud Run's request_latencies: underflow (< 1 ms), then [1, 2), [2, 4), ..., then overflow.
    distribution = {"bucketOptions": {"exponentialBuckets": {"numFiniteBuckets": 3, "growthFactor": 2, "scale": 1}},
                    "bucketCounts": ["10", "80", "9", "1"]}
    assert percentile(distribution, 0.5) == 2.0 and percentile(distribution, 0.99) == 4.0
    assert percentile(distribution, 1.0) == 8.0
    # What the gate counts as slower than a limit: each bucket that holds any request, by its lower bound.
    assert buckets(distribution) == [(0.0, 10), (1.0, 80), (2.0, 9), (4.0, 1)]


def test_in_cloud_run_shape_points_are_aligned_late_and_exponential(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDRUN_MONITORING=cloudrun: one point per aligned minute that ended at least DELAY_S ago, newest first,
    latencies in exponential buckets; what the rollout's reader then makes of it is the same figures."""
    from iris_tools.cloudrun.metrics import EXPONENTIAL, Shape
    from iris_tools.google.distribution import buckets

    monkeypatch.setattr(metrics, "LATENCY_BUCKETS_MS", [0.5, 1])
    readings = [PROMETHEUS % (90, 10, 80, 95, 100, 70, 100), PROMETHEUS % (190, 12, 100, 195, 202, 270, 202),
                PROMETHEUS % (290, 14, 120, 295, 304, 370, 304)]
    texts = iter(readings)
    clock = iter([60.0, 120.0, 180.0])
    monkeypatch.setattr(metrics.time, "time", lambda: next(clock))
    sampler = Sampler(lambda: next(texts))
    for _ in readings:
        sampler.sample()
    shape = Shape.from_environment(environment.read({"CLOUDRUN_MONITORING": "cloudrun"}, "emulator"))
    assert (shape.align_s, shape.delay_s, shape.page_size) == (60, 180, 2)
    service_of = {"iris-00001-abc": "iris"}
    late = time_series(sampler, REQUEST_COUNT, 60.0, 180.0, service_of, "p", "r", shape, now=250.0)
    assert late == []  # nothing has been visible for 180 s yet
    counts = time_series(sampler, REQUEST_COUNT, 60.0, 180.0, service_of, "p", "r", shape, now=400.0)
    ok = next(s for s in counts if s["metric"]["labels"]["response_code_class"] == "2xx")
    assert [p["interval"]["endTime"][17:19] for p in ok["points"]] == ["00", "00"]  # two whole minutes
    assert [int(p["value"]["int64Value"]) for p in ok["points"]] == [100, 100]  # newest first
    latency = time_series(sampler, REQUEST_LATENCIES, 60.0, 180.0, service_of, "p", "r", shape, now=400.0)[0]
    distribution = latency["points"][0]["value"]["distributionValue"]
    assert distribution["bucketOptions"] == EXPONENTIAL and int(distribution["count"]) == 102
    assert sum(count for _, count in buckets(distribution)) == 102


def test_a_label_selector_selects_by_service_and_by_a_deploy_s_nonce_with_or_without_spaces() -> None:
    """gcloud finds the base revision of `services update` by `client.knative.dev/nonce = <nonce>`; revisions list
    by `serving.knative.dev/service = <s>`. Broken on purpose (the service term only, as before): the nonce forms
    were refused with a 400."""
    from iris_tools.cloudrun.endpoints import _selected
    from iris_tools.cloudrun.errors import InvalidArgument

    assert _selected("client.knative.dev/nonce = abc") == {"client.knative.dev/nonce": "abc"}
    assert _selected("client.knative.dev/nonce=abc") == {"client.knative.dev/nonce": "abc"}
    assert _selected("serving.knative.dev/service = iris,client.knative.dev/nonce = abc") == {
        "serving.knative.dev/service": "iris", "client.knative.dev/nonce": "abc"}
    assert _selected("serving.knative.dev/service==iris") == {"serving.knative.dev/service": "iris"}
    assert _selected(None) == {}
    for bad in ("app=iris", "serving.knative.dev/service", "client.knative.dev/nonce="):
        with pytest.raises(InvalidArgument, match="labelSelector"):
            _selected(bad)


def test_instances_and_start_ups_come_back_through_the_monitoring_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local instance_count (a GAUGE per state, its value at each reading) and startup_latencies (a
    distribution of the instances that became ready in the window), read back by the rollout's reader."""
    import urllib.parse

    from iris_tools.google.api import GoogleApi
    from iris_tools.google.monitoring import INSTANCE_COUNT, STARTUP_LATENCIES, Monitoring

    counts = iter([{"iris-00001-abc": {"active": 1, "idle": 0}}, {"iris-00001-abc": {"active": 2, "idle": 1}}])
    started = [(130.0, "iris-00001-abc", 0.25), (140.0, "iris-00001-abc", 0.75), (400.0, "iris-00001-abc", 9.0)]
    sampler = Sampler(lambda: "", instances=lambda: next(counts), startups=lambda: started)
    clock = iter([100.0, 160.0])
    monkeypatch.setattr(metrics.time, "time", lambda: next(clock))
    sampler.sample()
    sampler.sample()
    service_of = {"iris-00001-abc": "iris"}

    class LocalMonitoring(GoogleApi):
        def call(self, method: str, path: str, body=None) -> dict:
            query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).items()}
            metric = INSTANCE_COUNT if INSTANCE_COUNT in query["filter"] else STARTUP_LATENCIES
            return {"timeSeries": time_series(sampler, metric, 100.0, 160.0, service_of, "p", "us-central1")}

    reader = Monitoring(LocalMonitoring("http://monitoring.test/"), "p")
    assert reader.instances("iris", 160.0) == {"iris-00001-abc": {"active": 2, "idle": 1}}
    assert reader.startups("iris", 100.0, 160.0) == {"iris-00001-abc": (2, 500.0)}  # the one at 400 s is outside
