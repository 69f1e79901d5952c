"""Cloud Run Admin API v2, driven by Google's own client (google-cloud-run, run_v2, REST transport), each step checked
through gcloud (v1) as well: one store, two APIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from tests.cloudrun.harness import CloudRunUnderTest, traffic_of, wait_for

PARENT = "projects/iris-local/locations/us-central1"
POINT = "/?length=5.8&width=3.4"
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def clients(cloud_run: CloudRunUnderTest) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
    options = ClientOptions(api_endpoint=cloud_run.api())
    return (run_v2.ServicesClient(credentials=AnonymousCredentials(), transport="rest", client_options=options),
            run_v2.RevisionsClient(credentials=AnonymousCredentials(), transport="rest", client_options=options))


def template(image: str, revision: str | None = None, min_instances: int = 0) -> run_v2.RevisionTemplate:
    return run_v2.RevisionTemplate(revision=revision or "", containers=[run_v2.Container(image=image)],
                                   scaling=run_v2.RevisionScaling(min_instance_count=min_instances,
                                                                  max_instance_count=3),
                                   max_instance_request_concurrency=20)


def ask(cloud_run: CloudRunUnderTest, url: str) -> requests.Response:
    """A prediction from `url` with the invoker token: a service made through v2 is private, as on Cloud Run."""
    answer = requests.get(url + POINT, headers={"Authorization": f"Bearer {cloud_run.token()}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def test_google_s_client_creates_revises_splits_refuses_a_stale_etag_lists_and_deletes(
        cloud_run: CloudRunUnderTest) -> None:
    """Broken on purpose (the etag not checked): the stale update was applied and the 90/10 split lost."""
    services, revisions = clients(cloud_run)
    created = services.create_service(parent=PARENT, service_id="v2", service=run_v2.Service(
        template=template("iris:svc", min_instances=2), labels={"team": "ml"})).result(timeout=120)
    first = short(created.latest_ready_revision)
    assert created.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    described = cloud_run.describe("v2")  # gcloud sees the service v2 made
    assert described["metadata"]["labels"]["team"] == "ml"
    assert described["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"] == "3"
    wait_for(lambda: len(cloud_run.state()["revisions"][first]["instances"]) == 2, 30, "v2's minInstanceCount")
    assert described["spec"]["template"]["spec"]["containerConcurrency"] == 20
    assert ask(cloud_run, created.uri).json()["predicted_class"] == "versicolor"

    # A new revision, traffic pinned to the old one (as a deploy --no-traffic).
    stale = services.get_service(name=created.name)
    revised = run_v2.Service(stale)
    revised.template = template("iris:lin_svc", revision="v2-lin")
    revised.traffic = [run_v2.TrafficTarget(type_=REVISION, revision=first, percent=100)]
    updated = services.update_service(service=revised).result(timeout=120)
    assert short(updated.latest_created_revision) == "v2-lin" and updated.traffic[0].revision == first
    assert [(r, p) for r, p, _ in traffic_of(cloud_run.describe("v2")) if p] == [(first, 100)]

    # 90/10, the new one tagged: its tag URI answers from it, and gcloud sees the same split.
    split = run_v2.Service(updated)
    split.traffic = [run_v2.TrafficTarget(type_=REVISION, revision=first, percent=90),
                     run_v2.TrafficTarget(type_=REVISION, revision="v2-lin", percent=10, tag="canary")]
    moved = services.update_service(service=split).result(timeout=120)
    tagged = next(s for s in moved.traffic_statuses if s.tag == "canary")
    answer = ask(cloud_run, tagged.uri)
    assert (answer.json()["predicted_class"], answer.headers["X-Revision"]) == ("setosa", "v2-lin")
    assert sorted((r, p) for r, p, _ in traffic_of(cloud_run.describe("v2")) if p) == [(first, 90), ("v2-lin", 10)]

    # A stale etag: 409 ABORTED, nothing changed.
    stale.traffic = [run_v2.TrafficTarget(type_=LATEST, percent=100)]
    with pytest.raises(exceptions.Conflict) as refused:
        services.update_service(service=stale)
    assert "etag" in str(refused.value)
    assert sorted((r, p) for r, p, _ in traffic_of(cloud_run.describe("v2")) if p) == [(first, 90), ("v2-lin", 10)]

    listed = {short(s.name) for s in services.list_services(parent=PARENT)}
    assert "v2" in listed and "v2" in {s["metadata"]["name"] for s in json.loads(
        cloud_run.ok("run", "services", "list", "--format=json").stdout)}
    assert {short(r.name) for r in revisions.list_revisions(parent=created.name)} == {first, "v2-lin"}
    assert revisions.get_revision(name=f"{created.name}/revisions/v2-lin").containers[0].image == "iris:lin_svc"

    services.delete_service(name=created.name).result(timeout=60)
    assert cloud_run.gcloud("run", "services", "describe", "v2").returncode != 0
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=created.name)


def test_a_service_gcloud_made_is_read_and_moved_through_v2(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "made", "--image", "iris:svc")
    cloud_run.ok("run", "deploy", "made", "--image", "iris:lin_svc", "--no-traffic", "--tag", "next")
    services, _ = clients(cloud_run)
    service = services.get_service(name=f"{PARENT}/services/made")
    assert {s.tag for s in service.traffic_statuses if s.tag} == {"next"}
    service.traffic = [run_v2.TrafficTarget(type_=LATEST, percent=100)]
    moved = services.update_service(service=service).result(timeout=120)
    latest = short(moved.latest_ready_revision)
    assert [(r, p) for r, p, _ in traffic_of(cloud_run.describe("made")) if p] == [(latest, 100)]
    assert ask(cloud_run, moved.uri).json()["predicted_class"] == "setosa"  # Envoy moved too


@pytest.mark.parametrize("body, field", [
    ({"template": {"containers": [{}]}}, "service.template.containers[0].image"),
    ({"template": {"containers": [{"image": "iris:svc"}], "timeout": "forever"}}, "service.template.timeout"),
    ({"template": {"containers": [{"image": "iris:svc"}]}, "traffic": [{"type": 7, "percent": 100}]},
     "service.traffic[0].type"),
    ({"template": {"containers": [{"image": "iris:svc"}]}, "colour": "blue"}, "service.colour"),
    ({"template": "iris:svc"}, "service.template"),
])
def test_a_malformed_body_gets_google_s_400_naming_the_field_and_changes_nothing(
        cloud_run: CloudRunUnderTest, body: dict, field: str) -> None:
    answer = requests.post(f"{cloud_run.api()}/v2/{PARENT}/services?serviceId=bad", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert requests.get(f"{cloud_run.api()}/v2/{PARENT}/services/bad", timeout=30).status_code == 404


def test_enums_are_read_by_name_and_by_number_and_written_as_asked(cloud_run: CloudRunUnderTest) -> None:
    base = f"{cloud_run.api()}/v2/{PARENT}/services"
    body = {"template": {"containers": [{"image": "iris:svc"}]},
            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]}
    created = requests.post(f"{base}?serviceId=named", json=body, timeout=60).json()
    wait = requests.post(f"{cloud_run.api()}/v2/{created['name']}:wait", json={"timeout": "60s"}, timeout=90).json()
    assert wait["done"] and wait["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"
    assert wait["response"]["traffic"][0]["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    body["traffic"][0]["type"] = 1
    requests.post(f"{base}?serviceId=numbered", json=body, timeout=60)
    numbered = requests.get(f"{base}/numbered?$alt=json;enum-encoding=int", timeout=30).json()
    assert numbered["traffic"][0]["type"] == 1 and numbered["ingress"] == 1


NODE_CLIENT = Path(__file__).parent / "node_client"


def node(cloud_run: CloudRunUnderTest, step: str) -> dict:
    port = cloud_run.api().rsplit(":", 1)[1]
    result = subprocess.run(["node", "client.js", port, step], cwd=NODE_CLIENT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_google_s_node_client_drives_the_same_story(cloud_run: CloudRunUnderTest) -> None:
    """A second client no one here wrote: @google-cloud/run (Node.js, REST fallback), pinned in
    tests/cloudrun/node_client/package.json; `.ci/run` installs it (`npm ci`), CI requires it."""
    if not (NODE_CLIENT / "node_modules" / "@google-cloud" / "run").is_dir() or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("the Node client is not installed: npm ci --prefix tests/cloudrun/node_client")
        pytest.skip("no Node client: npm ci --prefix tests/cloudrun/node_client")
    created = node(cloud_run, "create")
    first = short(created["latestReady"])
    assert [(r, p) for r, p, _ in traffic_of(cloud_run.describe("node")) if p] == [(first, 100)]
    node(cloud_run, "revise")
    assert [(r, p) for r, p, _ in traffic_of(cloud_run.describe("node")) if p] == [(first, 100)]
    split = node(cloud_run, "split")
    tagged = next(s for s in split["statuses"] if s.get("tag") == "canary")
    assert ask(cloud_run, tagged["uri"]).headers["X-Revision"] == "node-lin"
    assert sorted((r, p) for r, p, _ in traffic_of(cloud_run.describe("node")) if p) == [(first, 90), ("node-lin", 10)]
    stale = node(cloud_run, "stale")
    assert stale["refused"] and stale["code"] == 10, stale  # ABORTED
    assert sorted((r, p) for r, p, _ in traffic_of(cloud_run.describe("node")) if p) == [(first, 90), ("node-lin", 10)]
    assert f"{PARENT}/services/node" in node(cloud_run, "list")["names"]
    node(cloud_run, "delete")
    assert cloud_run.gcloud("run", "services", "describe", "node").returncode != 0
