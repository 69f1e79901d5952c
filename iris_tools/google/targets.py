"""The two places a client of these APIs can point at, and where the local one keeps what a client needs.

TARGET=cloudrun is Cloud Run itself, through the user's own gcloud configuration. TARGET=local is the
local Cloud Run (`make emulator`), which writes under RUN_DIR:
  cloudrun/         its state, including `token`: the bearer token its private services take
  gcloud/           a gcloud configuration whose endpoints point at it (CLOUDSDK_CONFIG)
"""

from __future__ import annotations

from pathlib import Path

from iris_tools.environment import TARGETS as TARGETS, value

TOKEN_FILE = "token"  # in the state directory: the bearer token private services take


def run_dir() -> Path:
    """RUN_DIR as the environment says now (tests and tools set it after import)."""
    return value("RUN_DIR")


def directories(run_dir: Path) -> tuple[Path, Path]:
    """Under RUN_DIR: the local Cloud Run's state, and the gcloud configuration that points at it."""
    return run_dir / "cloudrun", run_dir / "gcloud"
