"""Cloud Run jobs on the local Cloud Run, as the real gcloud drives them: deploy, execute, retries, logs, delete; the
metadata server a task authenticates with; and gcloud's `logs read`, which prints every entry's textPayload."""

from __future__ import annotations

import json

import requests

from tests.cloudrun.harness import CloudRunUnderTest

TOOLS = "iris-tools:0.1.0"


def test_a_job_runs_its_task_retries_it_and_keeps_each_attempt_s_log(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "jobs", "deploy", "tools", "--image", TOOLS, "--args", "no-such-command",
                 "--max-retries", "1")
    failed = cloud_run.gcloud("run", "jobs", "execute", "tools", "--wait")
    assert failed.returncode != 0 and "The execution failed" in failed.stderr, failed.stderr
    executions = json.loads(cloud_run.ok("run", "jobs", "executions", "list", "--job", "tools",
                                         "--format=json").stdout)
    (execution,) = executions
    name = execution["metadata"]["name"]
    assert name.startswith("tools-") and execution["metadata"]["labels"]["run.googleapis.com/job"] == "tools"
    described = json.loads(cloud_run.ok("run", "jobs", "executions", "describe", name, "--format=json").stdout)
    status = described["status"]
    assert status["failedCount"] == 1 and status["retriedCount"] == 1 and status["succeededCount"] == 0
    completed = next(c for c in status["conditions"] if c["type"] == "Completed")
    assert completed["status"] == "False" and "exit code 2" in completed["message"], completed
    logs = sorted((cloud_run.run_dir / "cloudrun" / "logs").glob(f"{name}-0-*.log"))
    assert len(logs) == 2 and all("invalid choice: 'no-such-command'" in p.read_text() for p in logs)
    read = cloud_run.ok("run", "jobs", "logs", "read", "tools", "--limit", "50")
    assert "invalid choice: 'no-such-command'" in read.stdout
    by_execution = cloud_run.ok("beta", "run", "jobs", "executions", "logs", "read", name)  # labels."..." = name
    assert "invalid choice: 'no-such-command'" in by_execution.stdout
    entries = json.loads(cloud_run.ok("logging", "read", 'resource.type="cloud_run_job" AND '
                                      'resource.labels.job_name="tools"', "--format=json", "--limit", "5").stdout)
    assert entries and {e["labels"]["run.googleapis.com/execution_name"] for e in entries} == {name}

    cloud_run.ok("run", "jobs", "create", "other", "--image", TOOLS, "--args=--help")
    assert cloud_run.gcloud("run", "jobs", "create", "other", "--image", TOOLS).returncode != 0  # it exists
    cloud_run.ok("run", "jobs", "update", "tools", "--args=--help", "--max-retries", "0")
    cloud_run.ok("run", "jobs", "execute", "tools", "--wait")
    job = json.loads(cloud_run.ok("run", "jobs", "describe", "tools", "--format=json").stdout)
    assert job["status"]["executionCount"] == 2
    assert job["status"]["latestCreatedExecution"]["completionStatus"] == "EXECUTION_SUCCEEDED"
    listed = cloud_run.ok("run", "jobs", "list").stdout
    assert "tools" in listed and "other" in listed
    cloud_run.ok("run", "jobs", "delete", "tools")
    gone = cloud_run.gcloud("run", "jobs", "describe", "tools")
    assert gone.returncode != 0 and "tools" in gone.stderr


def test_a_job_whose_image_cannot_run_here_is_not_ready_and_never_runs(cloud_run: CloudRunUnderTest) -> None:
    """As Cloud Run refuses an image it cannot pull: gcloud's deploy fails saying why, and execute is refused."""
    deployed = cloud_run.gcloud("run", "jobs", "deploy", "model", "--image", "iris:svc")
    assert deployed.returncode != 0 and "Image 'iris:svc' not found" in deployed.stderr, deployed.stderr
    refused = cloud_run.gcloud("run", "jobs", "execute", "model")
    assert refused.returncode != 0 and "is not ready" in refused.stderr, refused.stderr
    assert json.loads(cloud_run.ok("run", "jobs", "executions", "list", "--format=json").stdout) == []
    cloud_run.ok("run", "jobs", "update", "model", "--image", TOOLS, "--args=--help")  # made runnable, it runs
    cloud_run.ok("run", "jobs", "execute", "model", "--wait")


def test_the_metadata_server_hands_out_tokens_the_apis_take_and_no_others(cloud_run: CloudRunUnderTest) -> None:
    api = cloud_run.api()
    services = f"{api}/apis/serving.knative.dev/v1/namespaces/iris-local/services"
    flavour = {"Metadata-Flavor": "Google"}
    assert requests.get(f"{api}/computeMetadata/v1/project/project-id", timeout=10).status_code == 403
    ping = requests.get(f"{api}/", headers=flavour, timeout=10)
    assert ping.status_code == 200 and ping.headers["Metadata-Flavor"] == "Google"
    assert requests.get(f"{api}/computeMetadata/v1/project/project-id", headers=flavour, timeout=10).text == \
        "iris-local"
    token = requests.get(f"{api}/computeMetadata/v1/instance/service-accounts/default/token", headers=flavour,
                         timeout=10).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert requests.get(services, headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=10).status_code == 200
    refused = requests.get(services, headers={"Authorization": "Bearer ya29.made-up"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    assert requests.get(services, timeout=10).status_code == 200  # gcloud's own calls carry no credentials here
    identity = requests.get(f"{api}/computeMetadata/v1/instance/service-accounts/default/identity",
                            params={"audience": "http://127.0.0.1"}, headers=flavour, timeout=10)
    assert identity.text == cloud_run.token()  # what private local services take


def test_gcloud_run_services_logs_read_prints_structured_lines(cloud_run: CloudRunUnderTest) -> None:
    """It crashed (`TypeError: sequence item 1: expected str instance, NoneType found`): gcloud prints an entry's
    textPayload only, and a structured line had none."""
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    url = cloud_run.read()["status"]["url"]
    assert requests.get(f"{url}/?length=5.8&width=3.4", timeout=30).status_code == 200
    read = cloud_run.gcloud("run", "services", "logs", "read", "iris", "--limit", "20")
    assert read.returncode == 0, read.stderr
    assert '"kind":"prediction"' in read.stdout.replace(" ", "")
