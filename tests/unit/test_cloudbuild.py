"""cloudbuild.yaml cannot run here (no Google Cloud); at least every file it calls must exist."""

import os
import re
from pathlib import Path

import pytest

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


def test_the_upload_to_cloud_build_carries_an_imported_model_s_artifact(tmp_path_factory: pytest.TempPathFactory
                                                                        ) -> None:
    """What the real gcloud would upload (`gcloud meta list-files-for-upload`, which reads .gcloudignore, else
    .gitignore): an imported model's artifact and manifest go (git ignores them), local state does not."""
    import shutil
    import subprocess

    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("no gcloud")
    tmp_path, config = tmp_path_factory.mktemp("checkout"), tmp_path_factory.mktemp("gcloud-config")
    for name in (".gitignore", ".gcloudignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for path in ("functions/churn/main.py", "functions/churn/model.joblib", "functions/churn/model.json",
                 ".venv/bin/python", ".run/state.json", "notebooks/trained/telco.joblib", "shared/function.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    listed = subprocess.run([gcloud, "meta", "list-files-for-upload", str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
                                              "CLOUDSDK_CONFIG": str(config)})
    assert listed.returncode == 0, listed.stderr
    uploaded = {Path(line).relative_to(tmp_path).as_posix() if line.startswith("/") else line
                for line in listed.stdout.split()}
    assert {"functions/churn/main.py", "functions/churn/model.joblib", "functions/churn/model.json",
            "shared/function.py"} <= uploaded, uploaded
    assert not any(path.startswith((".venv/", ".run/", "notebooks/trained/")) for path in uploaded), uploaded
