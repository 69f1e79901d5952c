"""cloudbuild.yaml cannot run here (no Google Cloud); at least every file it calls must exist."""

import re

from tests.helpers import ROOT


def test_every_repository_file_cloudbuild_calls_exists() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    called = set(re.findall(r"(?<![\w/.-])((?:build|notebooks)/[\w./-]+|requirements[\w-]*\.txt)", text))
    assert {"build/build_images.sh", "notebooks/run_notebook.py", "notebooks/pickle_models.ipynb",
            "requirements-tools.txt"} <= called
    for path in called:
        assert (ROOT / path).is_file(), path


def test_cloudbuild_builds_from_the_same_script_as_make_images() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "build/build_images.sh" in makefile
    assert "args: [build/build_images.sh]" in (ROOT / "cloudbuild.yaml").read_text()


def test_cloudbuild_tags_images_by_commit_and_can_release_a_model_with_no_traffic() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    assert "COMMIT=$SHORT_SHA" in text
    assert '_RELEASE_MODEL: ""' in text  # off unless asked for
    release = text[text.index("- id: release-with-no-traffic"):]
    assert "gcloud run deploy" in release and "--no-traffic" in release and '--tag "${_TAG}"' in release
    assert "${_RELEASE_MODEL}-$SHORT_SHA" in release and "--no-allow-unauthenticated" in release
    script = (ROOT / "build" / "build_images.sh").read_text()
    assert '"${image}:${model}-${COMMIT}"' in script
