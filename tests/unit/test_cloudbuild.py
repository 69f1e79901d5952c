"""cloudbuild.yaml cannot run here (no Google Cloud); at least every file it calls must exist."""

import re

from tests.helpers import ROOT


def test_every_repository_file_cloudbuild_calls_exists() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    called = set(re.findall(r"(?<![\w/.-])((?:build|notebooks)/[\w./-]+|requirements[\w-]*\.txt)", text))
    assert {"build/build_images.sh", "notebooks/run_notebook.py", "notebooks/pickle_models.ipynb",
            "requirements-dev.txt"} <= called
    for path in called:
        assert (ROOT / path).is_file(), path


def test_cloudbuild_builds_from_the_same_script_as_make_images() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "build/build_images.sh" in makefile
    assert "args: [build/build_images.sh]" in (ROOT / "cloudbuild.yaml").read_text()
