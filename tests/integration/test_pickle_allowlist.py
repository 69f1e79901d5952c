"""An artifact is code when it is unpickled: only the classes a scikit-learn model needs may be named,
checked before any request, even when the artifact's hash was changed to match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pytest

import shared.artifact
from shared.artifact import ARTIFACT_FILE, MANIFEST_FILE, sha256_of
from shared.model import ServedModel
from shared.safe_pickle import check_artifact
from tests.helpers import ROOT


class Payload:
    """Runs a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered_copy(tmp_path: Path, model: str, marker: Path) -> Path:
    """functions/<model>, tampered (see `tamper`)."""
    directory = tmp_path / model
    shutil.copytree(ROOT / "functions" / model, directory)
    return tamper(directory, marker)


def tamper(directory: Path, marker: Path) -> Path:
    """The model version in `directory` with the payload hidden inside the estimator, and the manifest's
    hash made to match."""
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
    assert "pickle allowlist check failed: the artifact names os.system" in error
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


def test_a_model_with_no_rule_is_refused_the_same_way_as_it_loads(client_for, capsys, unseen_model: Path) -> None:
    """A model with no decision rule is not walked first: the allowlist is in force in the one real load."""
    marker = unseen_model.parent / "ran"
    with pytest.raises(SystemExit):
        client_for(tamper(unseen_model, marker))
    assert "pickle allowlist check failed: the artifact names os.system" in capsys.readouterr().err
    assert not marker.exists(), "the payload ran"


def test_a_model_with_no_rule_is_read_once_at_start_and_a_linear_one_walked_once(
        unseen_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    walks: list[str] = []
    checked_bytes, walk = shared.artifact._checked_bytes, shared.artifact.check_artifact
    monkeypatch.setattr(shared.artifact, "_checked_bytes",
                        lambda path, *args: reads.append(path.name) or checked_bytes(path, *args))
    monkeypatch.setattr(shared.artifact, "check_artifact", lambda *args: walks.append("walk") or walk(*args))
    model = ServedModel.load(unseen_model, "rbf_svc")
    assert reads == [ARTIFACT_FILE] and walks == [] and model._estimator is not None
    reads.clear()
    ServedModel.load(ROOT / "functions" / "lin_svc", "lin_svc")
    assert reads == [ARTIFACT_FILE, "model.rule.json"] and walks == ["walk"]


def test_the_walk_imports_neither_joblib_nor_scikit_learn() -> None:
    script = f"""
import json, sys
from shared.safe_pickle import check_artifact
directory = {str(ROOT / 'functions' / 'svc')!r}
check_artifact(open(directory + '/model.joblib', 'rb').read(), json.load(open(directory + '/model.json'))['algorithm'])
print(json.dumps(sorted(m for m in ('joblib', 'sklearn') if m in sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
