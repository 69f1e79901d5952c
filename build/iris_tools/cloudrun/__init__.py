"""A local Cloud Run: the Admin API that gcloud drives, revisions that run for real, Envoy as the data plane."""

from __future__ import annotations

from pathlib import Path

TOKEN_FILE = "token"  # in the state directory: the bearer token private services take


def directories(run_dir: Path) -> tuple[Path, Path]:
    """Under RUN_DIR: the local Cloud Run's state, and the gcloud configuration that points at it."""
    return run_dir / "cloudrun", run_dir / "gcloud"
