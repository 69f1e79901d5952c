"""The Admin API under hostile input: every refusal a 4xx in Google's error JSON, the stored state unchanged."""

from __future__ import annotations

import json
import urllib.parse

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloudrun.harness import SERVICES, CloudRunUnderTest

GOOD = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "iris"},
        "spec": {"template": {"spec": {"containers": [{"image": "iris:svc"}]}}}}


JOBS = "/apis/run.googleapis.com/v1/namespaces/iris-local/jobs"
JOB = {"apiVersion": "run.googleapis.com/v1", "kind": "Job", "metadata": {"name": "r"},
       "spec": {"template": {"spec": {"template": {"spec": {"containers": [{"image": "iris-tools:0.1.0"}]}}}}}}


def job_with(**container: object) -> dict:
    document = json.loads(json.dumps(JOB))
    document["spec"]["template"]["spec"]["template"]["spec"]["containers"][0].update(container)
    return document


def google_error(response: requests.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == response.status_code and isinstance(error["message"], str) and error["status"]
    return error


def stored(cloud_run: CloudRunUnderTest) -> dict:
    state = cloud_run.state()
    state.pop("resource_version", None)
    return state


def test_malformed_and_hostile_requests_are_refused_and_change_nothing(cloud_run: CloudRunUnderTest) -> None:
    api = cloud_run.api()
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    before = stored(cloud_run)
    cases = [
        ("POST", SERVICES, b"{not json", 400),
        ("POST", SERVICES, json.dumps([1, 2]).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "metadata": {"name": "iris-2"}, "spec": {}}).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "metadata": {"name": "x" * 80}}).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "metadata": {"name": "../../etc"}}).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "metadata": {"name": "iris-3"}, "extra": 1}).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "metadata": {"name": "iris-4", "labels": {"a": 1}}}).encode(), 400),
        ("POST", SERVICES, json.dumps({**GOOD, "spec": {"template": {"spec": {"containers": [{"image": 7}]}}},
                                       "metadata": {"name": "iris-5"}}).encode(), 400),
        ("POST", SERVICES, json.dumps(GOOD).encode(), 409),  # it exists
        ("PUT", SERVICES + "/iris", json.dumps({**GOOD, "spec": {**GOOD["spec"], "traffic": [
            {"revisionName": "iris-nope", "percent": 100}]}}).encode(), 400),
        ("PUT", SERVICES + "/iris", json.dumps({**GOOD, "spec": {**GOOD["spec"], "traffic": [
            {"latestRevision": True, "percent": "100"}]}}).encode(), 400),
        ("PUT", SERVICES + "/%2e%2e%2f%2e%2e%2fstate.json", json.dumps(GOOD).encode(), 404),
        ("GET", SERVICES + "/..%2F..%2Fstate", b"", 404),
        ("GET", "/apis/serving.knative.dev/v1/namespaces/other-project/services", b"", 404),
        ("POST", "/apis/serving.knative.dev/v1/namespaces/other-project/services", json.dumps(GOOD).encode(), 404),
        ("DELETE", SERVICES + "/nothing", b"", 404),
        ("PATCH", SERVICES + "/iris", b"{}", 405),
        ("GET", "/v1/projects/iris-local/locations/us-central1/services/iris:setIamPolicy", b"", 404),
        ("POST", "/v2/entries:list", json.dumps({"filter": "((( nonsense"}).encode(), 400),
        ("GET", "/etc/passwd", b"", 404),
        ("POST", JOBS, b"[1]", 400),
        ("POST", JOBS, json.dumps({**JOB, "metadata": {"name": "Bad_Name"}}).encode(), 400),
        ("POST", JOBS, json.dumps(job_with(env=[{"value": "x"}])).encode(), 400),
        ("POST", JOBS, json.dumps(job_with(args="job")).encode(), 400),
        ("POST", JOBS, json.dumps(job_with(args=[1])).encode(), 400),
        ("POST", JOBS + "/nothing:run", b"{}", 404),
        ("GET", "/apis/run.googleapis.com/v1/namespaces/iris-local/executions/nothing", b"", 404),
        ("POST", "/apis/run.googleapis.com/v1/namespaces/iris-local/executions/nothing:cancel", b"", 404),
        ("GET", "/apis/run.googleapis.com/v1/namespaces/iris-local/tasks?labelSelector=app%3Dx", b"", 400),
        *[("GET", "/v3/projects/iris-local/timeSeries?" + urllib.parse.urlencode({
            "filter": 'metric.type = "run.googleapis.com/request_count"', **aggregation}), b"", 400)
          for aggregation in ({"aggregation.alignmentPeriod": "0s"}, {"aggregation.alignmentPeriod": "sixty"},
                              {"aggregation.alignmentPeriod": "99999999s"},
                              {"aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_RATE"})],
    ]
    for method, path, body, status in cases:
        response = requests.request(method, api + path, data=body, timeout=30,
                                    headers={"Content-Type": "application/json"})
        google_error(response, status)
    huge = requests.post(api + SERVICES, data=b"{" + b" " * (2 * 1024 * 1024) + b"}", timeout=30,
                         headers={"Content-Type": "application/json"})
    google_error(huge, 413)
    assert stored(cloud_run) == before


def test_a_stale_resource_version_is_refused_with_aborted(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    api = cloud_run.api()
    current = requests.get(api + SERVICES + "/iris", timeout=30).json()
    stale = json.loads(json.dumps(current))
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "candidate")
    before = stored(cloud_run)
    stale["metadata"]["annotations"]["x/changed"] = "by a writer that read an old version"
    error = google_error(requests.put(api + SERVICES + "/iris", json=stale, timeout=30), 409)
    assert error["status"] == "ABORTED" and f"version '{current['metadata']['resourceVersion']}' was specified" \
        in error["message"]
    assert stored(cloud_run) == before


@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                             st.sampled_from(["apiVersion", "kind", "metadata", "spec", "name", "template",
                                              "containers", "image", "traffic", "percent", "revisionName", "tag",
                                              "latestRevision", "env", "ports", "containerPort", "x"]),
                             inner, max_size=4), max_leaves=20))
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_generated_service_bodies_never_get_a_5xx(cloud_run: CloudRunUnderTest, body) -> None:
    api = cloud_run.api()
    for method, path in (("POST", SERVICES), ("PUT", SERVICES + "/iris")):
        response = requests.request(method, api + path, json=body, timeout=60)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            google_error(response)
