"""Traffic moves between revisions through Envoy: no request dropped, the split as configured, at once."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.cloudrun.harness import CloudRunUnderTest, Load, traffic_of


def revisions(deployed: CloudRunUnderTest) -> tuple[str, str, str]:
    service = deployed.read()
    svc = next(r for r, p, _ in traffic_of(service) if p == 100)
    candidate = next(t["revisionName"] for t in service["status"]["traffic"] if t.get("tag") == "candidate")
    return service["status"]["url"], svc, candidate


def served_by(url: str, count: int, threads: int = 4) -> Counter:
    def batch(n: int) -> Counter:
        seen: Counter = Counter()
        with requests.Session() as session:
            for _ in range(n):
                response = session.get(url + "/?length=5.8&width=3.4", timeout=10)
                assert response.status_code == 200, response.text
                seen[response.headers["X-Revision"]] += 1
        return seen

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(batch, [count // threads] * threads), Counter())


def test_moving_traffic_step_by_step_under_load_drops_no_request(deployed: CloudRunUnderTest) -> None:
    url, svc, candidate = revisions(deployed)
    with Load(url) as load:
        for svc_share in (90, 50, 0):
            deployed.ok("run", "services", "update-traffic", "iris", "--to-revisions",
                        f"{svc}={svc_share},{candidate}={100 - svc_share}")
    assert load.failures == []
    assert load.total > 200 and load.revisions[svc] > 0 and load.revisions[candidate] > 0


def test_the_observed_split_matches_the_configured_one_within_three_standard_deviations(
        deployed: CloudRunUnderTest) -> None:
    url, svc, candidate = revisions(deployed)
    deployed.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{svc}=90,{candidate}=10")
    n = 10_000
    seen = served_by(url, n)
    assert sum(seen.values()) == n and set(seen) == {svc, candidate}
    sigma = math.sqrt(n * 0.1 * 0.9)
    assert abs(seen[candidate] - n * 0.1) <= 3 * sigma, seen
    tag_url = next(t["url"] for t in deployed.read()["status"]["traffic"] if t.get("tag") == "candidate")
    assert served_by(tag_url, 400) == Counter({candidate: 400})  # a tag URL sends everything to its revision


def test_a_change_takes_effect_in_the_data_plane_before_gcloud_returns(deployed: CloudRunUnderTest) -> None:
    url, svc, candidate = revisions(deployed)
    deployed.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{candidate}=100")
    assert served_by(url, 200, threads=2) == Counter({candidate: 200})
    deployed.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{svc}=100")
    assert served_by(url, 200, threads=2) == Counter({svc: 200})


def test_figures_per_revision_come_back_through_the_monitoring_api(deployed: CloudRunUnderTest) -> None:
    url, svc, candidate = revisions(deployed)
    tag_url = next(t["url"] for t in deployed.read()["status"]["traffic"] if t.get("tag") == "candidate")
    served_by(url, 300, threads=2)
    served_by(tag_url, 100, threads=2)
    requests.get(url + "/?length=oops", timeout=10)  # one 4xx on svc
    import time

    time.sleep(2.5)  # one sampler reading (1 s) and one Envoy stats flush (1 s)
    status = deployed.cli("status", "--window", "60")
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip().startswith("iris-")}
    # traffic, instances, active (had a request within the last second: either, 2.5 s after the load), requests
    assert [lines[svc].split()[n] for n in (1, 2, 4)] == ["100%", "1", "301"]
    assert [lines[candidate].split()[n] for n in (1, 2, 3, 5)] == ["0%", "candidate", "1", "100"]
    end = time.time()
    figures = {}
    from iris_tools.cloudrun.__main__ import revision_figures

    figures = revision_figures(deployed.api(), "iris-local", end - 60, end)
    assert figures[svc][:2] == (301, 0) and figures[candidate][:2] == (100, 0)
    assert figures[svc][3] is not None and figures[svc][3] >= figures[svc][2]
