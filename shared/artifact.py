"""A model version on disk: a joblib artifact and the JSON manifest beside it.

The manifest records what the artifact is (algorithm, parameters, features,
classes), what made it (scikit-learn version) and its SHA-256. `load_model`
unpickles nothing until the checksum and the scikit-learn version match.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from shared.errors import ModelLoadError

ARTIFACT_FILE = "model.joblib"
MANIFEST_FILE = "model.json"
MANIFEST_FORMAT = 1
RETRAIN_HINT = "retrain with `make models`"


@dataclass(frozen=True)
class Feature:
    """One input column: its full name, and the short alias the GET API also accepts."""

    name: str
    alias: str


@dataclass(frozen=True)
class Manifest:
    name: str
    algorithm: str
    params: dict[str, Any]
    features: tuple[Feature, ...]
    class_names: tuple[str, ...]
    sklearn_version: str
    sha256: str
    training_accuracy: float
    training_rows: int
    python_version: str
    manifest_format: int = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [asdict(feature) for feature in self.features]
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        return cls(
            name=str(data["name"]),
            algorithm=str(data["algorithm"]),
            params=dict(data["params"]),
            features=tuple(Feature(name=str(f["name"]), alias=str(f["alias"])) for f in data["features"]),
            class_names=tuple(str(c) for c in data["class_names"]),
            sklearn_version=str(data["sklearn_version"]),
            sha256=str(data["sha256"]),
            training_accuracy=float(data["training_accuracy"]),
            training_rows=int(data["training_rows"]),
            python_version=str(data["python_version"]),
            manifest_format=int(data["manifest_format"]),
        )


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_safe(value: Any) -> Any:
    """Estimator parameters as JSON: numbers, strings, None and lists stay, the rest is repr()."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    return repr(value)


def save_model(
    estimator: Any,
    directory: Path,
    *,
    name: str,
    features: list[Feature],
    class_names: list[str],
    X: np.ndarray,
    y: np.ndarray,
) -> Manifest:
    """Write a fitted classifier and its manifest into `directory`; same model, same bytes."""
    if len(getattr(estimator, "classes_", ())) != len(class_names):
        raise ValueError(f"{name}: {len(class_names)} class names for classes {getattr(estimator, 'classes_', None)}")
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    payload = buffer.getvalue()
    (directory / ARTIFACT_FILE).write_bytes(payload)
    manifest = Manifest(
        name=name,
        algorithm=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        params=_json_safe(estimator.get_params()),
        features=tuple(features),
        class_names=tuple(class_names),
        sklearn_version=sklearn.__version__,
        sha256=sha256_of(payload),
        training_accuracy=round(float(estimator.score(X, y)), 6),
        training_rows=int(len(X)),
        python_version=platform.python_version(),
    )
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelLoadError(f"no manifest at {path}: {RETRAIN_HINT}")
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"manifest {path} is unreadable ({type(exc).__name__}: {exc}): {RETRAIN_HINT}") from None


def load_model(directory: Path, expected_name: str) -> tuple[Any, Manifest]:
    """Verify, then unpickle, the model in `directory`.

    Raises ModelLoadError naming the failed check: manifest present and readable,
    model name as expected, artifact present, SHA-256 equal, scikit-learn version
    equal, estimator consistent with the manifest.
    """
    manifest = read_manifest(directory)
    if manifest.name != expected_name:
        raise ModelLoadError(
            f"model name check failed: {directory / MANIFEST_FILE} describes {manifest.name!r}, "
            f"but this function serves {expected_name!r}"
        )
    artifact = directory / ARTIFACT_FILE
    if not artifact.is_file():
        raise ModelLoadError(f"no artifact at {artifact}: {RETRAIN_HINT}")
    payload = artifact.read_bytes()
    actual = sha256_of(payload)
    if actual != manifest.sha256:
        raise ModelLoadError(
            f"SHA-256 check failed for {artifact}: manifest says {manifest.sha256}, file is {actual}; "
            f"the artifact was changed or replaced: {RETRAIN_HINT}"
        )
    if manifest.sklearn_version != sklearn.__version__:
        raise ModelLoadError(
            f"scikit-learn version check failed for {expected_name!r}: trained with "
            f"{manifest.sklearn_version}, installed {sklearn.__version__}; {RETRAIN_HINT}, "
            f"or install the pinned version: pip install scikit-learn=={manifest.sklearn_version}"
        )
    # The bytes unpickled are the bytes hashed: nothing can swap the file in between.
    estimator = joblib.load(io.BytesIO(payload))
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != len(manifest.features) or len(getattr(estimator, "classes_", ())) != len(manifest.class_names):
        raise ModelLoadError(
            f"consistency check failed for {expected_name!r}: estimator takes {n_features} features and "
            f"{len(getattr(estimator, 'classes_', ()))} classes, manifest lists {len(manifest.features)} "
            f"and {len(manifest.class_names)}: {RETRAIN_HINT}"
        )
    return estimator, manifest
