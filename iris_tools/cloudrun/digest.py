"""Images as the local Cloud Run names and runs them: a revision's `status.imageDigest`, and what runs for an image
given by digest (`gcloud run services update` without `--image` pins the template to the digest it was told).

Process runtime: a process runs a model folder and the shared handler, so the digest is a sha256 over those files
(their paths and bytes); a changed artifact or handler is a different digest, an unchanged one the same. A digest
this local Cloud Run reported resolves to the image it was computed from (`iris:svc`), and runs it only while its
files still give that digest: a changed folder is refused, naming the digest, never served under the old name.

Docker runtime: the image's own id (`docker image inspect`), reported as `iris@sha256:<id>`; no registry holds a
repository digest here, so that name runs as the local image `sha256:<id>` itself.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from iris_tools.cloudrun.resources import model_of_image
from iris_tools.environment import ROOT
from iris_tools.local.servers import DOCKER
from iris_tools.local.versions import FUNCTIONS_DIR

PINNED = "@sha256:"


class ImageNotRunnable(Exception):
    """An image this local Cloud Run cannot run; the message names it and says why (a revision's failure)."""


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


def _docker_id(reference: str) -> str | None:
    """The local image's id (`sha256:...`), or None when docker has no such image."""
    try:
        found = subprocess.run([DOCKER, "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True,
                               text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    identity = found.stdout.strip()
    return identity if found.returncode == 0 and identity.startswith("sha256:") else None


def _folder_digest(image: str) -> str | None:
    """The digest of the model folder and shared handler that `image` (by tag) runs, or None when there is none."""
    model = model_of_image(image)
    folder = FUNCTIONS_DIR / model if model else None
    if folder is None or not (folder / "main.py").exists():
        return None
    folder = folder.resolve()
    files = sorted(path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    shared = sorted((ROOT / "shared").glob("*.py"))
    return f"{_repository(image)}@sha256:{_files_digest([(folder, files), (ROOT, shared)])}"


class Images:
    """What this local Cloud Run has named by digest: digest -> the image (by tag) it was computed from. The map is
    the store's own (`known`), so it outlives a restart."""

    def __init__(self, known: dict[str, str], runtime: str) -> None:
        self.known = known
        self.runtime = runtime

    def digest(self, image: str) -> str | None:
        """`<repository>@sha256:<hex>` for `image` (by tag or by digest), remembered; None when it names nothing."""
        try:
            source = self.source(image)
        except ImageNotRunnable:
            return None
        if self.runtime == "docker":
            identity = _docker_id(self.runnable(image))
            return f"{_repository(image)}@{identity}" if identity else None
        digest = _folder_digest(source)
        if digest is not None:
            self.known[digest] = source
        return digest

    def source(self, image: str) -> str:
        """The image by tag that `image` names (itself, when it is by tag). ImageNotRunnable for a digest this local
        Cloud Run never reported, or whose files have changed since."""
        if PINNED not in image or model_of_image(image):
            return image.split("@", 1)[0] if model_of_image(image) else image
        if self.runtime == "docker":
            return image
        source = self.known.get(image)
        if source is None:
            raise ImageNotRunnable(f"Image '{image}' not found: this local Cloud Run never reported that digest "
                                   f"(deploy by tag, iris:<model>)")
        if _folder_digest(source) != image:
            model = model_of_image(source)
            raise ImageNotRunnable(f"Image '{image}' not found: it was computed from functions/{model}/ and the "
                                   f"shared handler, which have changed since; deploy {source} again to run what "
                                   f"they hold now")
        return source

    def runnable(self, image: str) -> str:
        """What to run for `image`: an image by tag (process runtime: its model folder), or under docker a reference
        docker can run (a digest this machine named by its image id is run as `sha256:<id>`)."""
        if self.runtime == "docker" and PINNED in image and not model_of_image(image):
            return image.split("@", 1)[1]
        return self.source(image)
