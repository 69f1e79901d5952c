"""An artifact is code when it is unpickled: only the classes a scikit-learn model needs may be named,
checked before any request, even when the artifact's hash was changed to match."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import joblib
import pytest

from shared.artifact import ARTIFACT_FILE, MANIFEST_FILE, sha256_of
from shared.safe_pickle import check_artifact
from tests.helpers import ROOT


class Payload:
    """Runs a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered_copy(tmp_path: Path, model: str, marker: Path) -> Path:
    """functions/<model> with the payload hidden inside the estimator, and the manifest's hash made to match."""
    directory = tmp_path / model
    shutil.copytree(ROOT / "functions" / model, directory)
    estimator = joblib.load(directory / ARTIFACT_FILE)
    estimator.hidden_ = Payload(marker)
    joblib.dump(estimator, directory / ARTIFACT_FILE)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["sha256"] = sha256_of((directory / ARTIFACT_FILE).read_bytes())
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize("model", ["svc", "lin_svc"])  # lin_svc is served without unpickling: checked all the same
def test_a_pickle_naming_anything_else_is_refused_at_start_before_it_runs(client_for, capsys, tmp_path: Path,
                                                                          model: str) -> None:
    marker = tmp_path / "ran"
    directory = tampered_copy(tmp_path, model, marker)
    with pytest.raises(SystemExit):
        client_for(directory)
    error = capsys.readouterr().err
    assert "pickle allowlist check failed: the artifact names posix.system" in error
    assert not marker.exists(), "the payload ran"


def test_the_shipped_artifacts_name_only_allowed_classes() -> None:
    for model in ("svc", "lin_svc"):
        directory = ROOT / "functions" / model
        algorithm = json.loads((directory / MANIFEST_FILE).read_text())["algorithm"]
        check_artifact((directory / ARTIFACT_FILE).read_bytes(), algorithm)


def test_an_artifact_of_another_estimator_class_than_the_manifest_says_is_refused() -> None:
    payload = (ROOT / "functions" / "svc" / ARTIFACT_FILE).read_bytes()
    with pytest.raises(Exception, match="names sklearn.svm._classes.SVC"):
        check_artifact(payload, "sklearn.svm._classes.LinearSVC")


def test_a_torn_artifact_is_refused_as_such() -> None:
    payload = (ROOT / "functions" / "svc" / ARTIFACT_FILE).read_bytes()
    with pytest.raises(Exception, match="pickle allowlist check failed: the artifact cannot be walked"):
        check_artifact(payload[: len(payload) // 2], "sklearn.svm._classes.SVC")
