import json
from pathlib import Path

import pytest
import sklearn
from sklearn.svm import LinearSVC

from shared.artifact import ARTIFACT_FILE, MANIFEST_FILE, load_model, read_manifest
from shared.errors import ModelLoadError
from tests.helpers import iris_xy, write_model_version


@pytest.fixture
def version(tmp_path: Path) -> Path:
    return write_model_version(tmp_path / "lin", LinearSVC(random_state=0, max_iter=10_000))


def test_manifest_describes_the_artifact(version: Path) -> None:
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    assert manifest["name"] == "lin"
    assert manifest["algorithm"] == "sklearn.svm._classes.LinearSVC"
    assert manifest["params"]["max_iter"] == 10_000
    assert manifest["features"] == [{"name": "sepal_length", "alias": "length", "type": "number"},
                                    {"name": "sepal_width", "alias": "width", "type": "number"}]
    assert (manifest["task"], manifest["trusted"], manifest["source"]) == ("classifier", [], None)
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert manifest["sklearn_version"] == sklearn.__version__
    assert len(manifest["sha256"]) == 64
    assert 0.5 < manifest["training_accuracy"] <= 1.0
    assert manifest["training_rows"] == 150


def test_saving_the_same_model_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    first = write_model_version(tmp_path / "a" / "m", LinearSVC(random_state=0, max_iter=10_000))
    second = write_model_version(tmp_path / "b" / "m", LinearSVC(random_state=0, max_iter=10_000))
    for name in (ARTIFACT_FILE, MANIFEST_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_a_verified_model_loads_and_predicts_as_trained(version: Path) -> None:
    estimator, manifest = load_model(version, "lin")
    X, y = iris_xy()
    assert estimator.score(X, y) == pytest.approx(manifest.training_accuracy, abs=1e-6)


def test_a_changed_artifact_is_refused_by_its_checksum(version: Path) -> None:
    payload = bytearray((version / ARTIFACT_FILE).read_bytes())
    payload[-10] ^= 0xFF
    (version / ARTIFACT_FILE).write_bytes(bytes(payload))
    with pytest.raises(ModelLoadError, match=r"SHA-256 check failed .* retrain with `make models`"):
        load_model(version, "lin")


def test_an_artifact_from_another_scikit_learn_is_refused_with_both_fixes(version: Path) -> None:
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    manifest["sklearn_version"] = "1.0.2"
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError) as caught:
        load_model(version, "lin")
    message = str(caught.value)
    assert "scikit-learn version check failed" in message
    assert f"trained with 1.0.2, installed {sklearn.__version__}" in message
    assert "make models" in message and "pip install scikit-learn==1.0.2" in message


def test_a_manifest_of_another_model_is_refused(version: Path) -> None:
    with pytest.raises(ModelLoadError, match="model name check failed.*'lin'.*'svc'"):
        load_model(version, "svc")


def test_a_missing_artifact_is_refused(version: Path) -> None:
    (version / ARTIFACT_FILE).unlink()
    with pytest.raises(ModelLoadError, match="no artifact at .*make models"):
        load_model(version, "lin")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"name": "lin"})])
def test_an_unreadable_manifest_is_refused(version: Path, content: str) -> None:
    (version / MANIFEST_FILE).write_text(content)
    with pytest.raises(ModelLoadError, match="unreadable"):
        read_manifest(version)


def test_a_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no manifest"):
        load_model(tmp_path, "lin")


def test_a_linear_model_gets_its_decision_rule_checked_by_its_own_checksum(version: Path) -> None:
    from shared.artifact import RULE_FILE, verify_model

    manifest, rule = verify_model(version, "lin")
    assert rule["kind"] == "ovr" and manifest.rule_sha256 is not None
    (version / RULE_FILE).write_text((version / RULE_FILE).read_text().replace("[", "[ ", 1))
    with pytest.raises(ModelLoadError, match=r"SHA-256 check failed .*model.rule.json.*decision rule was changed"):
        verify_model(version, "lin")


def test_a_model_that_is_not_linear_has_no_rule(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    from shared.artifact import RULE_FILE

    directory = write_model_version(tmp_path / "rbf", SVC(kernel="rbf"))
    assert json.loads((directory / MANIFEST_FILE).read_text())["rule_sha256"] is None
    assert not (directory / RULE_FILE).exists()
