"""A revision's `status.imageDigest`: what it runs, named by content, as Cloud Run names an image.

Docker runtime: the image's own id (`docker image inspect`), `iris@sha256:...`. Process runtime: the
process runs the model folder and the shared handler, so the digest is a sha256 over those files (their
paths and bytes): a changed artifact or handler is a different digest, an unchanged one the same.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from iris_tools.environment import ROOT
from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.cloudrun.resources import model_of_image
from iris_tools.local.servers import DOCKER


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _files_digest(groups: list[tuple[Path, list[Path]]]) -> str:
    digest = hashlib.sha256()
    for base, files in groups:
        for path in files:
            digest.update(str(path.relative_to(base)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def image_digest(image: str, runtime: str) -> str | None:
    """`<repository>@sha256:<hex>`, or None when there is nothing to name (no such image or model folder)."""
    if runtime == "docker":
        try:
            found = subprocess.run([DOCKER, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True,
                                   text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        identity = found.stdout.strip()
        return f"{_repository(image)}@{identity}" if found.returncode == 0 and identity.startswith("sha256:") else None
    model = model_of_image(image)
    folder = FUNCTIONS_DIR / model if model else None
    if folder is None or not (folder / "main.py").exists():
        return None
    folder = folder.resolve()
    files = sorted(path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    shared = sorted((ROOT / "shared").glob("*.py"))
    return f"{_repository(image)}@sha256:{_files_digest([(folder, files), (ROOT, shared)])}"
