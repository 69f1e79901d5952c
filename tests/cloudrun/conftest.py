"""Every test here drives a real local Cloud Run with the real gcloud; CI requires them (never skipped there)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloudrun.harness import GCLOUD, CloudRunUnderTest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cloudrun/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cloudrun)


@pytest.fixture
def cloud_run(tmp_path: Path) -> Iterator[CloudRunUnderTest]:
    if shutil.which(GCLOUD) is None:
        if os.environ.get("CI"):
            pytest.fail(f"gcloud is required in CI and is not at {GCLOUD}")
        pytest.skip(f"no gcloud at {GCLOUD}")
    emulator = CloudRunUnderTest(tmp_path / "run")
    emulator.start()
    try:
        yield emulator
    finally:
        stopped = emulator.stop()
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def deployed(cloud_run: CloudRunUnderTest) -> CloudRunUnderTest:
    """Service iris with svc serving 100% and lin_svc at 0% under tag `candidate`."""
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:svc")
    cloud_run.ok("run", "deploy", "iris", "--image", "iris:lin_svc", "--no-traffic", "--tag", "candidate")
    return cloud_run
