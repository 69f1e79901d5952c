"""The gcloud commands that manage Cloud Run services and revisions, against the local Cloud Run."""

from __future__ import annotations

import json
import textwrap

import pytest
import requests

from tests.cloudrun.harness import CloudRunUnderTest, traffic_of


def answer(url: str) -> requests.Response:
    return requests.get(url + "/?length=5.8&width=3.4", timeout=10)


def test_deploy_creates_a_service_whose_first_revision_serves_everything(cloud_run: CloudRunUnderTest) -> None:
    result = cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    service = cloud_run.describe()
    revision = service["status"]["latestReadyRevisionName"]
    assert revision.startswith("iris-00001-")
    assert f"revision [{revision}] has been deployed and is serving 100 percent of traffic" in result.stderr
    assert f"Service URL: {service['status']['url']}" in result.stderr
    assert traffic_of(service) == [(revision, 100, None)]
    response = answer(service["status"]["url"])
    assert response.json()["predicted_class"] == "versicolor"
    assert response.headers["X-Revision"] == revision
    serving = requests.get(service["status"]["url"] + "/metadata", timeout=10).json()["serving"]
    assert serving == {"service": "iris", "revision": revision, "configuration": "iris"}


def test_a_no_traffic_deploy_answers_at_its_tag_url_and_takes_nothing_from_the_service(deployed: CloudRunUnderTest) -> None:
    service = deployed.describe()
    first, second = (target[0] for target in traffic_of(service)[:2])
    tagged = next(t for t in service["status"]["traffic"] if t.get("tag") == "candidate")
    assert tagged["revisionName"] != first and tagged["url"] != service["status"]["url"]
    assert answer(tagged["url"]).json()["predicted_class"] == "setosa"
    assert answer(tagged["url"]).headers["X-Revision"] == tagged["revisionName"]
    assert {answer(service["status"]["url"]).headers["X-Revision"] for _ in range(30)} == {first}


def test_update_traffic_by_revision_by_tag_and_to_latest(deployed: CloudRunUnderTest) -> None:
    service = deployed.describe()
    svc = service["status"]["latestReadyRevisionName"]
    svc = next(r for r, p, _ in traffic_of(service) if p == 100)
    candidate = next(t["revisionName"] for t in service["status"]["traffic"] if t.get("tag") == "candidate")
    deployed.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{svc}=90,{candidate}=10")
    shares = {r: p for r, p, _ in traffic_of(deployed.describe()) if p}
    assert shares == {svc: 90, candidate: 10}
    deployed.ok("run", "services", "update-traffic", "iris", "--to-tags", "candidate=50")
    shares = {r: p for r, p, _ in traffic_of(deployed.describe()) if p}
    assert shares == {svc: 50, candidate: 50}
    deployed.ok("run", "services", "update-traffic", "iris", "--to-latest")
    latest = deployed.describe()
    assert [t for t in latest["status"]["traffic"] if t.get("percent")] == \
        [{"latestRevision": True, "percent": 100, "revisionName": candidate}]


def test_tags_are_added_removed_and_cleared(deployed: CloudRunUnderTest) -> None:
    svc = next(r for r, p, _ in traffic_of(deployed.describe()) if p == 100)
    deployed.ok("run", "services", "update-traffic", "iris", "--update-tags", f"stable={svc}")
    tags = {t["tag"]: t for t in deployed.describe()["status"]["traffic"] if t.get("tag")}
    assert set(tags) == {"stable", "candidate"}
    assert answer(tags["stable"]["url"]).headers["X-Revision"] == svc
    deployed.ok("run", "services", "update-traffic", "iris", "--remove-tags", "candidate")
    assert {t["tag"] for t in deployed.describe()["status"]["traffic"] if t.get("tag")} == {"stable"}
    with pytest.raises(requests.ConnectionError):
        answer(tags["candidate"]["url"])  # a removed tag's URL no longer answers
    deployed.ok("run", "services", "update-traffic", "iris", "--clear-tags")
    assert [t for t in deployed.describe()["status"]["traffic"] if t.get("tag")] == []


def test_list_and_describe_services_and_revisions_then_delete(deployed: CloudRunUnderTest) -> None:
    listed = json.loads(deployed.ok("run", "services", "list", "--format=json").stdout)
    assert [s["metadata"]["name"] for s in listed] == ["iris"]
    revisions = json.loads(deployed.ok("run", "revisions", "list", "--service", "iris", "--format=json").stdout)
    assert len(revisions) == 2
    candidate = next(t["revisionName"] for t in deployed.describe()["status"]["traffic"] if t.get("tag"))
    described = json.loads(deployed.ok("run", "revisions", "describe", candidate, "--format=json").stdout)
    assert described["spec"]["containers"][0]["image"] == "iris:lin_svc"
    assert described["metadata"]["labels"]["serving.knative.dev/service"] == "iris"
    deployed.ok("run", "services", "update-traffic", "iris", "--clear-tags")
    deployed.ok("run", "revisions", "delete", candidate)
    assert len(json.loads(deployed.ok("run", "revisions", "list", "--service", "iris", "--format=json").stdout)) == 1
    url = deployed.describe()["status"]["url"]
    deployed.ok("run", "services", "delete", "iris")
    missing = deployed.gcloud("run", "services", "describe", "iris")
    assert missing.returncode == 1 and "Cannot find service [iris]" in missing.stderr
    with pytest.raises(requests.ConnectionError):
        answer(url)
    assert deployed.state()["revisions"] == {}


def test_deploy_flags_reach_the_revision_as_on_cloud_run(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", "--set-env-vars", "MAX_BATCH_ROWS=5",
                 "--concurrency", "10", "--memory", "1Gi", "--port", "9090")
    service = cloud_run.describe()
    template = service["spec"]["template"]["spec"]
    assert template["containerConcurrency"] == 10
    assert template["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
    assert template["containers"][0]["ports"][0]["containerPort"] == 9090
    url = service["status"]["url"]
    assert requests.get(url + "/metadata", timeout=10).json()["limits"]["max_batch_rows"] == 5
    too_many = requests.post(url, json={"instances": [[5.8, 3.4]] * 6}, timeout=10)
    assert too_many.status_code == 413
    # The revision runs as its image would (python -m shared.server): JSON log lines naming the revision.
    revision = service["status"]["latestReadyRevisionName"]
    first = json.loads((cloud_run.run_dir / "cloudrun" / "logs" / f"{revision}.log").read_text().splitlines()[0])
    assert (first["severity"], first["model"], first["revision"]) == ("INFO", "svc", revision)


SERVICE_YAML = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: iris
spec:
  template:
    metadata:
      name: {name}
    spec:
      containers:
      - image: iris:lin_svc
  traffic:
{traffic}
"""


def test_services_replace_applies_a_yaml_traffic_block(deployed: CloudRunUnderTest, tmp_path) -> None:
    svc = next(r for r, p, _ in traffic_of(deployed.describe()) if p == 100)
    path = tmp_path / "service.yaml"
    traffic = textwrap.indent(f"- revisionName: {svc}\n  percent: 70\n- revisionName: iris-yaml\n  percent: 30\n"
                              f"  tag: yaml", "  ")
    path.write_text(SERVICE_YAML.format(name="iris-yaml", traffic=traffic))
    deployed.ok("run", "services", "replace", str(path))
    shares = {r: p for r, p, _ in traffic_of(deployed.describe()) if p}
    assert shares == {svc: 70, "iris-yaml": 30}
    yaml_url = next(t["url"] for t in deployed.describe()["status"]["traffic"] if t.get("tag") == "yaml")
    assert answer(yaml_url).headers["X-Revision"] == "iris-yaml"


def refused(cloud_run: CloudRunUnderTest, *args: str) -> str:
    before = cloud_run.state()
    result = cloud_run.gcloud(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    after = cloud_run.state()
    for entry in (before, after):
        entry.pop("resource_version", None)
    assert after == before, "a refused request changed the stored state"
    return result.stderr


def test_what_cloud_run_refuses_the_local_cloud_run_refuses_with_google_errors(deployed: CloudRunUnderTest,
                                                                               tmp_path) -> None:
    svc = next(r for r, p, _ in traffic_of(deployed.describe()) if p == 100)
    error = refused(deployed, "run", "services", "update-traffic", "iris", "--to-revisions", "iris-nope=10")
    assert "spec.traffic[" in error and "revision 'iris-nope' does not exist in service 'iris'" in error
    error = refused(deployed, "run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "lin_svc")
    assert "tag 'lin_svc' is not valid" in error and "'lin-svc'" in error
    error = refused(deployed, "run", "services", "update-traffic", "iris", "--update-tags", f"Stable={svc}")
    assert "tag 'Stable' is not valid" in error
    error = refused(deployed, "run", "revisions", "delete", svc)
    assert f"FAILED_PRECONDITION: Revision '{svc}' is referenced by a traffic target (100% of the traffic)" in error
    error = refused(deployed, "run", "deploy", "Iris_Service", "--image", "iris:svc")
    assert "service name" in error or "Iris_Service" in error
    error = refused(deployed, "run", "deploy", "iris", "--image", "iris:svc", "--revision-suffix", "V_2")
    assert "revision name 'iris-V_2' must be a DNS label" in error
    path = tmp_path / "service.yaml"
    path.write_text(SERVICE_YAML.format(name="iris-sum", traffic=textwrap.indent(
        f"- revisionName: {svc}\n  percent: 70\n- revisionName: iris-sum\n  percent: 20", "  ")))
    error = refused(deployed, "run", "services", "replace", str(path))
    assert "spec.traffic: traffic percentages must add up to 100, they add up to 90" in error
    path.write_text(SERVICE_YAML.format(name="iris-dup", traffic=textwrap.indent(
        f"- revisionName: {svc}\n  percent: 100\n  tag: same\n- revisionName: iris-dup\n  percent: 0\n  tag: same",
        "  ")))
    error = refused(deployed, "run", "services", "replace", str(path))
    assert "tag 'same' is used more than once" in error


def test_service_yaml_applies_and_makes_the_service_the_commands_make(cloud_run: CloudRunUnderTest, tmp_path) -> None:
    from tests.helpers import ROOT

    cloud_run.ok("run", "services", "replace", str(ROOT / "service.yaml"))
    cloud_run.ok("run", "services", "add-iam-policy-binding", "iris", "--member=allUsers", "--role=roles/run.invoker")
    from_yaml = cloud_run.describe()
    assert answer(from_yaml["status"]["url"]).json()["predicted_class"] == "versicolor"
    cloud_run.ok("run", "deploy", "iris-cli", "--image", "iris:svc", "--concurrency", "80", "--cpu", "1",
                 "--memory", "512Mi", "--max-instances", "5", "--min-instances", "0", "--timeout", "60",
                 "--port", "8080", "--set-env-vars", "MAX_BATCH_ROWS=10000")
    from_commands = cloud_run.describe("iris-cli")

    def essentials(service: dict) -> dict:
        template = service["spec"]["template"]
        container = template["spec"]["containers"][0]
        return {"image": container["image"], "env": container.get("env"),
                "limits": container["resources"]["limits"], "port": container["ports"][0]["containerPort"],
                "concurrency": template["spec"]["containerConcurrency"],
                "timeout": template["spec"].get("timeoutSeconds"),
                "max_scale": template["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"],
                "traffic": [(t.get("percent"), t.get("latestRevision")) for t in service["spec"]["traffic"]]}

    assert essentials(from_yaml) == essentials(from_commands)
    metadata = requests.get(from_yaml["status"]["url"] + "/metadata", timeout=10).json()
    assert metadata["limits"]["max_batch_rows"] == 10000
