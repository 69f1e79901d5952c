"""Predictions joined to the labels that came back, per revision, by the local store (DuckDB over the revisions'
logs, the one aggregate query), with labels from /feedback and from a CSV file: the figures reproduce exactly the
ground truth the labelled load recorded."""

from __future__ import annotations

import json
from collections import Counter

from tests.cloudrun.harness import WITH_FEEDBACK_KEY, CloudRunUnderTest, make, traffic_of


def test_a_labelled_load_on_a_split_is_judged_per_revision_from_the_logs_and_from_a_file(
        cloud_run: CloudRunUnderTest, tmp_path) -> None:
    """Broken on purpose (labels joined by revision order instead of id): every count below was off."""
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc", *WITH_FEEDBACK_KEY)
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "candidate")
    service = cloud_run.describe()
    svc = next(r for r, p, _ in traffic_of(service) if p == 100)
    lin = next(t["revisionName"] for t in service["status"]["traffic"] if t.get("tag") == "candidate")
    cloud_run.ok("run", "services", "update-traffic", "iris", "--to-revisions", f"{svc}=50,{lin}=50")
    loaded = make(cloud_run, "labelled-load", f"LOAD_URL={service['status']['url']}", LOAD_SECONDS="6",
                  LOAD_RATE="40", LABEL_DELAY_S="0.5")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    record = json.loads((cloud_run.run_dir / "report" / "labelled-load.json").read_text())
    truth = record["answered"]
    assert len(truth) > 100 and record["labels_posted"] == len(truth)
    expected = {revision: {"labelled": sum(a["revision"] == revision for a in truth),
                           "correct": sum(a["revision"] == revision and a["predicted"] == a["label"] for a in truth),
                           "mix": dict(Counter(a["predicted"] for a in truth if a["revision"] == revision))}
                for revision in (svc, lin)}
    assert all(e["labelled"] > 20 for e in expected.values())  # the split sent each a share

    from_logs = make(cloud_run, "outcomes")
    assert from_logs.returncode == 0, from_logs.stdout + from_logs.stderr
    report = json.loads((cloud_run.run_dir / "report" / "outcomes.json").read_text())
    for revision, wanted in expected.items():
        got = report["revisions"][revision]
        assert (got["labelled"], got["correct"], got["mix"]) == (wanted["labelled"], wanted["correct"],
                                                                 wanted["mix"]), revision
        assert got["coverage"] == 1.0 and got["accuracy_ci95"][0] <= got["accuracy"] <= got["accuracy_ci95"][1]
        assert got["label_delay"]["p50_s"] is not None and got["label_delay"]["p50_s"] >= 0.4
        assert sum(sum(row.values()) for row in got["confusion"].values()) == wanted["labelled"]
    assert report["unmatched"] == 0 and sorted(report["mix_shift"]["revisions"]) == sorted([svc, lin])
    a, b = (expected[name]["mix"] for name in report["mix_shift"]["revisions"])
    classes = set(a) | set(b)
    distance = 0.5 * sum(abs(a.get(c, 0) / sum(a.values()) - b.get(c, 0) / sum(b.values())) for c in classes)
    assert report["mix_shift"]["total_variation"] == round(distance, 4)

    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\n" + "".join(f"{a['id']},{a['label']}\n" for a in truth))
    from_file = make(cloud_run, "outcomes", f"LABELS={csv}")
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    again = json.loads((cloud_run.run_dir / "report" / "outcomes.json").read_text())
    for revision, wanted in expected.items():
        got = again["revisions"][revision]
        assert (got["labelled"], got["correct"]) == (wanted["labelled"], wanted["correct"])
        assert got["label_delay"]["p50_s"] is None  # a file says nothing of when labels came
