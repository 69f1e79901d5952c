"""The training notebook, executed headless as `make models` executes it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shared.artifact import ARTIFACT_FILE, MANIFEST_FILE, RULE_FILE, load_model
from tests.helpers import ROOT, TUTORIAL_ANSWERS

NOTEBOOK = ROOT / "notebooks" / "pickle_models.ipynb"


def run_notebook(output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "notebooks" / "run_notebook.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    monkeypatch.setenv("IRIS_MODELS_DIR", str(output / "functions"))
    monkeypatch.setenv("IRIS_FIGURE", str(output / "decision_regions.png"))
    runner.run(NOTEBOOK)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_notebook(output, monkeypatch)
    return output


def test_the_notebook_trains_every_catalogue_version_with_a_manifest(trained: Path) -> None:
    for name, answer in TUTORIAL_ANSWERS.items():
        estimator, manifest = load_model(trained / "functions" / name, name)
        assert manifest.class_names[int(estimator.predict([[5.8, 3.4]])[0])] == answer
    svc = json.loads((trained / "functions" / "svc" / MANIFEST_FILE).read_text())
    assert (svc["algorithm"], svc["params"]["kernel"]) == ("sklearn.svm._classes.SVC", "linear")
    lin = json.loads((trained / "functions" / "lin_svc" / MANIFEST_FILE).read_text())
    assert lin["algorithm"] == "sklearn.svm._classes.LinearSVC"


def test_the_notebook_draws_the_decision_regions_as_a_png(trained: Path) -> None:
    assert (trained / "decision_regions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_notebook_gives_the_same_artifacts_every_run(trained: Path) -> None:
    # functions/ was trained by an earlier run (make models): the bytes are the same.
    for name in TUTORIAL_ANSWERS:
        for file in (ARTIFACT_FILE, MANIFEST_FILE, RULE_FILE):
            assert (trained / "functions" / name / file).read_bytes() == (ROOT / "functions" / name / file).read_bytes()
