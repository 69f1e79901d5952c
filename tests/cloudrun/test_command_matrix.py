"""Everyday `gcloud run` commands, typed as a user types them, each checked by its effect: what describe says, the
environment of the process the revision runs, and what the service URL or a tag URL answers. The commands
test_gcloud_commands.py checks (deploy, update-traffic by revision, tag and latest, tags, list, describe, delete,
replace, refusals) are not repeated here. One local Cloud Run serves the module (each test its own service): the
suite's time is most of it gcloud starting and revisions starting."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sklearn.svm import SVC

from tests.cloudrun.harness import GCLOUD, CloudRunUnderTest, traffic_of
from tests.helpers import ROOT, write_model_version

POINT = "/?length=5.8&width=3.4"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudRunUnderTest]:
    """A local Cloud Run serving a copy of functions/ (the digest test changes a model folder: its own, `pinned`)."""
    if shutil.which(GCLOUD) is None:
        if os.environ.get("CI"):
            pytest.fail(f"gcloud is required in CI and is not at {GCLOUD}")
        pytest.skip(f"no gcloud at {GCLOUD}")
    base = tmp_path_factory.mktemp("matrix")
    functions = base / "functions"
    for model in ("svc", "lin_svc"):
        shutil.copytree(ROOT / "functions" / model, functions / model, ignore=shutil.ignore_patterns("__pycache__"))
    write_model_version(functions / "pinned", SVC(kernel="linear"))
    previous = os.environ.get("IRIS_FUNCTIONS_DIR")
    os.environ["IRIS_FUNCTIONS_DIR"] = str(functions)
    cloud_run = CloudRunUnderTest(base / "run")
    try:
        cloud_run.start()
        yield cloud_run
    finally:
        cloud_run.stop()
        if previous is None:
            os.environ.pop("IRIS_FUNCTIONS_DIR", None)
        else:
            os.environ["IRIS_FUNCTIONS_DIR"] = previous


def serving(cloud_run: CloudRunUnderTest, service: str) -> str:
    """The revision with 100% of `service`."""
    return next(r for r, p, _ in traffic_of(cloud_run.read(service)) if p == 100)


def answer(url: str) -> tuple[str, str]:
    """(predicted class, the revision that answered) from `url`."""
    response = requests.get(url + POINT, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predicted_class"], response.headers["X-Revision"]


def process_environment(cloud_run: CloudRunUnderTest, revision: str) -> dict[str, str]:
    """The environment of the process the revision runs (its process group's leader), as /proc has it."""
    pgid = cloud_run.state()["revisions"][revision]["instances"][0]["pgid"]
    items = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in items if b"=" in item)


def container_of(cloud_run: CloudRunUnderTest, service: str) -> dict:
    return cloud_run.read(service)["spec"]["template"]["spec"]["containers"][0]


def test_services_update_without_an_image_changes_what_it_says_and_serves_a_new_revision(
        emulator: CloudRunUnderTest) -> None:
    """Every `services update` of a user who does not rebuild: gcloud pins the template to the base revision's
    imageDigest, and the local Cloud Run runs it. Broken on purpose (digests resolved no more, as before): the first
    update failed with `Image 'iris@sha256:...' not found`."""
    emulator.ok("run", "deploy", "upd", "--image", "iris:svc")
    url = emulator.read("upd")["status"]["url"]
    first = serving(emulator, "upd")
    base_digest = json.loads(emulator.ok("run", "revisions", "describe", first, "--format=json").stdout)[
        "status"]["imageDigest"]
    checks = [
        (("--set-env-vars", "A=1"), lambda rev: process_environment(emulator, rev).get("A") == "1"),
        (("--update-env-vars", "B=2"), lambda rev: {k: process_environment(emulator, rev).get(k) for k in "AB"}
         == {"A": "1", "B": "2"}),
        (("--remove-env-vars", "A"), lambda rev: "A" not in process_environment(emulator, rev)
         and [e["name"] for e in container_of(emulator, "upd")["env"]] == ["B"]),
        (("--update-labels", "team=ml"), lambda rev: emulator.read("upd")["metadata"]["labels"].get("team") == "ml"),
        (("--concurrency", "5"), lambda rev: emulator.read("upd")["spec"]["template"]["spec"]["containerConcurrency"]
         == 5),
        (("--timeout", "30"), lambda rev: emulator.read("upd")["spec"]["template"]["spec"]["timeoutSeconds"] == 30),
        (("--min-instances", "1"), lambda rev: "1" in json.dumps(emulator.read("upd")).split("minScale")[1][:8]),
        (("--max-instances", "3"), lambda rev: "3" in json.dumps(emulator.read("upd")).split("maxScale")[1][:8]),
        (("--cpu", "1", "--memory", "1Gi"), lambda rev: container_of(emulator, "upd")["resources"]["limits"]
         == {"cpu": "1", "memory": "1Gi"}),
    ]
    revisions = [first]
    for flags, holds in checks:
        emulator.ok("run", "services", "update", "upd", *flags)
        revision = serving(emulator, "upd")
        if flags[0] != "--update-labels":  # a label of the service alone makes no revision
            assert revision not in revisions, flags
        revisions.append(revision)
        assert answer(url) == ("versicolor", revision), flags
        assert holds(revision), (flags, emulator.read("upd")["spec"])
        assert container_of(emulator, "upd")["image"] == base_digest  # pinned by gcloud, run by us
        described = json.loads(emulator.ok("run", "revisions", "describe", revision, "--format=json").stdout)
        assert described["status"]["imageDigest"] == base_digest, flags  # the same files: the same digest


def test_services_update_with_a_tag_tags_the_latest_and_with_an_image_serves_it(emulator: CloudRunUnderTest) -> None:
    """`--tag T` alone sends `{tag: T}` (no revision, no latestRevision): as Cloud Run, the tag goes on the latest
    revision. Broken on purpose (no defaulting): `spec.traffic[1]: a traffic target names a revisionName...`."""
    emulator.ok("run", "deploy", "tagged", "--image", "iris:svc")
    emulator.ok("run", "services", "update", "tagged", "--tag", "blue")
    service = emulator.read("tagged")
    target = next(t for t in service["status"]["traffic"] if t.get("tag") == "blue")
    assert answer(target["url"]) == ("versicolor", serving(emulator, "tagged"))
    first = serving(emulator, "tagged")
    emulator.ok("run", "services", "update", "tagged", "--image", "iris:lin_svc")
    assert answer(service["status"]["url"]) == ("setosa", serving(emulator, "tagged"))
    emulator.ok("run", "services", "update-traffic", "tagged", "--set-tags", f"green={first}")  # replaces every tag
    tags = {t["tag"]: t for t in emulator.read("tagged")["status"]["traffic"] if t.get("tag")}
    assert set(tags) == {"green"} and answer(tags["green"]["url"]) == ("versicolor", first)


def test_deploy_with_a_revision_suffix_and_private_then_the_iam_policy_commands(emulator: CloudRunUnderTest) -> None:
    emulator.ok("run", "deploy", "priv", "--image", "iris:svc", "--revision-suffix", "v1",
                "--no-allow-unauthenticated")
    service = emulator.read("priv")
    assert serving(emulator, "priv") == "priv-v1"
    assert requests.get(service["status"]["url"] + POINT, timeout=30).status_code == 403  # private: no token
    token = {"Authorization": f"Bearer {emulator.token()}"}
    assert requests.get(service["status"]["url"] + POINT, headers=token, timeout=30).status_code == 200
    policy = json.loads(emulator.ok("run", "services", "get-iam-policy", "priv", "--format=json").stdout)
    assert not any("allUsers" in b.get("members", []) for b in policy.get("bindings", []))
    emulator.ok("run", "services", "add-iam-policy-binding", "priv", "--member=allUsers", "--role=roles/run.invoker")
    assert requests.get(service["status"]["url"] + POINT, timeout=30).status_code == 200  # public now
    emulator.ok("run", "services", "remove-iam-policy-binding", "priv", "--member=allUsers",
                "--role=roles/run.invoker")
    assert requests.get(service["status"]["url"] + POINT, timeout=30).status_code == 403
    policy = json.loads(emulator.ok("run", "services", "get-iam-policy", "priv", "--format=json").stdout)
    assert not any("allUsers" in b.get("members", []) for b in policy.get("bindings", []))


def test_to_revisions_latest_then_describe_export_and_replace_round_trip(emulator: CloudRunUnderTest,
                                                                         tmp_path: Path) -> None:
    emulator.ok("run", "deploy", "exp", "--image", "iris:svc")
    old = serving(emulator, "exp")
    emulator.ok("run", "deploy", "exp", "--image", "iris:lin_svc", "--no-traffic", "--tag", "next")
    emulator.ok("run", "services", "update-traffic", "exp", f"--to-revisions={old}=60,LATEST=40")
    shares = {r: p for r, p, _ in traffic_of(emulator.read("exp")) if p}
    new = next(r for r in shares if r != old)
    assert shares == {old: 60, new: 40} and answer(emulator.read("exp")["status"]["url"])[1] in (old, new)
    exported = emulator.ok("run", "services", "describe", "exp", "--format", "export").stdout
    assert "\nstatus:" not in exported and "  name: exp\n" in exported  # export: the spec, no status
    path = tmp_path / "exp.yaml"
    path.write_text(exported)
    before = emulator.read("exp")
    emulator.ok("run", "services", "replace", str(path))
    after = emulator.read("exp")
    assert traffic_of(after) == traffic_of(before)  # what was exported is what stands
    assert sorted(emulator.read("exp")["status"]["traffic"], key=str) == sorted(after["status"]["traffic"], key=str)


def test_a_digest_whose_files_changed_is_refused_naming_it_and_nothing_else_is_served(
        emulator: CloudRunUnderTest) -> None:
    """The process runtime's digest names the model folder and the handler it was computed from: once the folder
    changed, a deploy of the old digest is refused naming it, and the service keeps serving what it served. Broken
    on purpose (the digest resolved to its model whatever the files): the changed folder was served under the old
    digest."""
    emulator.ok("run", "deploy", "pin", "--image", "iris:pinned")
    before = serving(emulator, "pin")
    digest = json.loads(emulator.ok("run", "revisions", "describe", before, "--format=json").stdout)["status"][
        "imageDigest"]
    folder = Path(os.environ["IRIS_FUNCTIONS_DIR"]) / "pinned"
    (folder / "notes.txt").write_text("changed after the deploy\n")
    refused = emulator.gcloud("run", "services", "update", "pin", "--set-env-vars", "C=3")
    assert refused.returncode != 0
    assert f"Image '{digest}' not found" in refused.stderr and "have changed since" in refused.stderr, refused.stderr
    assert serving(emulator, "pin") == before and answer(emulator.read("pin")["status"]["url"])[1] == before
