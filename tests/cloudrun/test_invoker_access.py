"""Invoker access as Cloud Run has it: a service with no allUsers invoker binding answers 403 to a request
without a valid bearer token; `make emulator-token` (python -m iris_tools.cloudrun token) gives a local caller one."""

from __future__ import annotations

import requests

from tests.cloudrun.harness import CloudRunUnderTest


def test_a_private_service_needs_the_token_and_a_public_one_does_not(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", "--no-allow-unauthenticated")
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "candidate",
                 "--no-allow-unauthenticated")
    service = cloud_run.describe()
    urls = [service["status"]["url"], next(t["url"] for t in service["status"]["traffic"] if t.get("tag"))]
    token = cloud_run.cli("token").stdout.strip()
    assert token == cloud_run.token() and len(token) >= 40
    for url in urls:  # the service URL and a tag's URL alike
        refused = requests.get(url + "/?length=5.8&width=3.4", timeout=10)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert "no allUsers invoker binding" in refused.json()["error"]
        wrong = requests.get(url + "/health", headers={"Authorization": "Bearer not-the-token"}, timeout=10)
        assert wrong.status_code == 403
        allowed = requests.get(url + "/?length=5.8&width=3.4", headers={"Authorization": f"Bearer {token}"},
                               timeout=10)
        assert allowed.status_code == 200
    cloud_run.ok("run", "services", "add-iam-policy-binding", "iris", "--member=allUsers",
                 "--role=roles/run.invoker")
    assert all(requests.get(url + "/health", timeout=10).status_code == 200 for url in urls)
    cloud_run.ok("run", "services", "remove-iam-policy-binding", "iris", "--member=allUsers",
                 "--role=roles/run.invoker")
    assert all(requests.get(url + "/health", timeout=10).status_code == 403 for url in urls)


def test_the_token_survives_a_restart(cloud_run: CloudRunUnderTest) -> None:
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", "--no-allow-unauthenticated")
    token = cloud_run.token()
    cloud_run.stop()
    cloud_run.start()
    url = cloud_run.describe()["status"]["url"]
    assert requests.get(url + "/health", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
