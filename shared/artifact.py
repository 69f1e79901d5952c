"""A model version on disk: a joblib artifact, the JSON manifest beside it, and for
linear models the decision rule as plain numbers (`model.rule.json`).

The manifest records what the artifact is (algorithm, parameters, features,
classes), what made it (scikit-learn version) and the SHA-256 of the artifact and
of the rule. `verify_model` checks all of that without importing scikit-learn or joblib;
`open_model` is what a function serves (a linear model walked, never unpickled; any other
unpickled in the same read); `unpickle` loads the estimator only after the same checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ModelLoadError
from shared.safe_pickle import check_artifact, restricted_load

ARTIFACT_FILE = "model.joblib"
MANIFEST_FILE = "model.json"
RULE_FILE = "model.rule.json"
MANIFEST_FORMAT = 1
RETRAIN_HINT = "retrain with `make models`"


NUMBER, STRING = "number", "string"
CLASSIFIER, REGRESSOR = "classifier", "regressor"
ClassValue = str | int | bool | float  # a class as the estimator's classes_ holds it, in its JSON type


def class_key(value: Any) -> str:
    """A class as text, one per class: a string as it is, any other class as JSON writes it (0, true, 1.5). The
    prediction log, the labels' store and the tools that read them name classes by it; answers keep the type."""
    return value if isinstance(value, str) else json.dumps(value)


def class_value(value: Any) -> ClassValue:
    """A class read back from JSON: a string, an integer, a boolean or a number, as it was written."""
    if isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"class {value!r} is not a string, a number or a boolean")


@dataclass(frozen=True)
class Feature:
    """One input column: its full name, the short alias the GET API also accepts, its type (a number or a
    string), and for a string column whose encoder refuses values it never saw, the values it knows."""

    name: str
    alias: str
    type: str = NUMBER
    categories: tuple[str, ...] | None = None

    def example(self) -> float | str:
        """A value this feature takes: 0.0 for a number; for a string, the first value its encoder knows (or "x",
        which one that takes any string takes)."""
        if self.type != STRING:
            return 0.0
        return self.categories[0] if self.categories else "x"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "alias": self.alias, "type": self.type}
        if self.categories is not None:
            data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Feature":
        kind = str(data.get("type", NUMBER))
        if kind not in (NUMBER, STRING):
            raise ValueError(f"feature {data.get('name')!r}: type {kind!r} is neither {NUMBER!r} nor {STRING!r}")
        categories = data.get("categories")
        return cls(name=str(data["name"]), alias=str(data["alias"]), type=kind,
                   categories=None if categories is None else tuple(str(c) for c in categories))


@dataclass(frozen=True)
class Manifest:
    name: str
    algorithm: str
    params: dict[str, Any]
    features: tuple[Feature, ...]
    class_names: tuple[ClassValue, ...]  # a single-output classifier's classes, in their JSON types
    sklearn_version: str
    sha256: str
    training_accuracy: float | None
    training_rows: int | None
    python_version: str
    rule_sha256: str | None = None
    manifest_format: int = MANIFEST_FORMAT
    task: str = CLASSIFIER  # or REGRESSOR: a number per row, no classes
    trusted: tuple[str, ...] = ()  # what an imported model's pickle may name beyond its own class (safe_pickle)
    source: dict[str, Any] | None = None  # an imported model: the file it came from and that file's SHA-256
    allow_nan: bool = False  # the estimator takes a missing value (NaN): a JSON null or an empty GET value reaches it
    outputs: int = 1  # targets per row: a multi-output model answers each row with a list
    output_classes: tuple[tuple[ClassValue, ...], ...] = ()  # a multi-output classifier's classes, per output
    boosters: tuple[dict[str, Any], ...] = ()  # XGBoost/LightGBM files beside the artifact: file, library, SHA-256
    batch: bool = False  # rows predicted together answer bit for bit as each alone (checked at import)
    probabilities: bool = False  # a classifier whose predict_proba answers a column per class (checked at import)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [feature.to_json() for feature in self.features]
        data["class_names"] = list(self.class_names)
        data["trusted"] = list(self.trusted)
        data["output_classes"] = [list(classes) for classes in self.output_classes]
        data["boosters"] = [dict(entry) for entry in self.boosters]
        for name, default in (("allow_nan", False), ("outputs", 1), ("output_classes", []), ("boosters", []),
                              ("batch", False), ("probabilities", False)):
            if data[name] == default:  # written only when they say something: the iris manifests stay as they were
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        return cls(
            name=str(data["name"]),
            algorithm=str(data["algorithm"]),
            params=dict(data["params"]),
            features=tuple(Feature.from_json(f) for f in data["features"]),
            class_names=tuple(class_value(c) for c in data["class_names"]),
            sklearn_version=str(data["sklearn_version"]),
            sha256=str(data["sha256"]),
            training_accuracy=None if data["training_accuracy"] is None else float(data["training_accuracy"]),
            training_rows=None if data["training_rows"] is None else int(data["training_rows"]),
            python_version=str(data["python_version"]),
            rule_sha256=None if data["rule_sha256"] is None else str(data["rule_sha256"]),
            manifest_format=int(data["manifest_format"]),
            task=_task(data.get("task", CLASSIFIER)),
            trusted=tuple(str(name) for name in data.get("trusted", ())),
            source=None if data.get("source") is None else dict(data["source"]),
            allow_nan=bool(data.get("allow_nan", False)),
            outputs=int(data.get("outputs", 1)),
            output_classes=tuple(tuple(class_value(c) for c in classes) for classes in data.get("output_classes", ())),
            boosters=tuple(dict(entry) for entry in data.get("boosters", ())),
            batch=bool(data.get("batch", False)),
            probabilities=bool(data.get("probabilities", False)),
        )

    @property
    def regressor(self) -> bool:
        return self.task == REGRESSOR

    @property
    def multi_output(self) -> bool:
        return self.outputs > 1


def _task(value: Any) -> str:
    if value not in (CLASSIFIER, REGRESSOR):
        raise ValueError(f"task {value!r} is neither {CLASSIFIER!r} nor {REGRESSOR!r}")
    return str(value)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_safe(value: Any) -> Any:
    """Estimator parameters as JSON: numbers, strings, None and lists stay, the rest is repr()."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
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
    """Write a fitted classifier, its rule if linear, and its manifest into `directory`; same model, same bytes."""
    import joblib
    import sklearn

    from shared.linear import export

    if len(getattr(estimator, "classes_", ())) != len(class_names):
        raise ValueError(f"{name}: {len(class_names)} class names for classes {getattr(estimator, 'classes_', None)}")
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    payload = buffer.getvalue()
    (directory / ARTIFACT_FILE).write_bytes(payload)
    rule = export(estimator)
    rule_sha256 = None
    if rule is None:
        (directory / RULE_FILE).unlink(missing_ok=True)
    else:
        encoded = (json.dumps(rule) + "\n").encode()
        (directory / RULE_FILE).write_bytes(encoded)
        rule_sha256 = sha256_of(encoded)
    manifest = Manifest(
        name=name,
        algorithm=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        params=json_safe(estimator.get_params()),
        features=tuple(features),
        class_names=tuple(class_names),
        sklearn_version=sklearn.__version__,
        sha256=sha256_of(payload),
        training_accuracy=round(float(estimator.score(X, y)), 6),
        training_rows=int(len(X)),
        python_version=platform.python_version(),
        rule_sha256=rule_sha256,
    )
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def is_imported(directory: Path) -> bool:
    """A version folder `make import-model` wrote (its manifest names the file it came from), not one the training
    notebook makes; read without checking anything else (False when there is no readable manifest)."""
    try:
        return bool(json.loads((directory / MANIFEST_FILE).read_text()).get("source"))
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelLoadError(f"no manifest at {path}: {RETRAIN_HINT}")
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"manifest {path} is unreadable ({type(exc).__name__}: {exc}): {RETRAIN_HINT}") from None


def _checked_bytes(path: Path, expected: str, what: str) -> bytes:
    if not path.is_file():
        raise ModelLoadError(f"no {what} at {path}: {RETRAIN_HINT}")
    payload = path.read_bytes()
    actual = sha256_of(payload)
    if actual != expected:
        raise ModelLoadError(
            f"SHA-256 check failed for {path}: manifest says {expected}, file is {actual}; "
            f"the {what} was changed or replaced: {RETRAIN_HINT}"
        )
    return payload


def installed_sklearn() -> str:
    # The distribution's version, read without importing scikit-learn (about 1 s and 80 MB).
    return installed_version("scikit-learn")


def _verified(directory: Path, expected_name: str) -> tuple[Manifest, bytes, dict[str, Any] | None]:
    """The checks that need no walk of the pickle: (manifest, artifact bytes, rule or None)."""
    manifest = read_manifest(directory)
    if manifest.name != expected_name:
        raise ModelLoadError(
            f"model name check failed: {directory / MANIFEST_FILE} describes {manifest.name!r}, "
            f"but this function serves {expected_name!r}"
        )
    payload = _checked_bytes(directory / ARTIFACT_FILE, manifest.sha256, "artifact")
    installed = installed_sklearn()
    if manifest.sklearn_version != installed:
        raise ModelLoadError(
            f"scikit-learn version check failed for {expected_name!r}: trained with "
            f"{manifest.sklearn_version}, installed {installed}; {RETRAIN_HINT}, "
            f"or install the pinned version: pip install scikit-learn=={manifest.sklearn_version}"
        )
    if manifest.rule_sha256 is None:
        return manifest, payload, None
    try:
        rule = json.loads(_checked_bytes(directory / RULE_FILE, manifest.rule_sha256, "decision rule"))
    except ValueError as exc:
        raise ModelLoadError(f"decision rule {directory / RULE_FILE} is unreadable ({exc}): {RETRAIN_HINT}") from None
    return manifest, payload, rule


def verify_model(directory: Path, expected_name: str) -> tuple[Manifest, dict[str, Any] | None]:
    """Check a model version without unpickling it; return its manifest and its rule, if linear.

    Raises ModelLoadError naming the failed check: manifest present and readable,
    model name as expected, artifact (and rule) present with the SHA-256 of the
    manifest, scikit-learn version equal to the installed one, the artifact naming
    only allowed classes (shared.safe_pickle).
    """
    manifest, payload, rule = _verified(directory, expected_name)
    # Before any request, and even when the hash was made to match: only allowed classes may be named.
    check_artifact(payload, manifest.algorithm, manifest.trusted)
    return manifest, rule


def open_model(directory: Path, expected_name: str) -> tuple[Manifest, dict[str, Any] | None, Any]:
    """What a function serves: (manifest, rule, estimator). A linear model's artifact is walked, not
    unpickled (estimator None: scikit-learn is loaded only for a near tie). A model with no rule is
    unpickled now, from the one read that was hashed, with the allowlist in force as it loads."""
    manifest, payload, rule = _verified(directory, expected_name)
    if rule is not None:
        check_artifact(payload, manifest.algorithm, manifest.trusted)
        return manifest, rule, None
    return manifest, None, _estimator(payload, manifest, directory)


def unpickle(directory: Path, manifest: Manifest) -> Any:
    """The estimator, from bytes that match the manifest's SHA-256 (checked again, as they are read)."""
    # The bytes unpickled are the bytes hashed: nothing can swap the file in between; the allowlist holds.
    return _estimator(_checked_bytes(directory / ARTIFACT_FILE, manifest.sha256, "artifact"), manifest, directory)


def _estimator(payload: bytes, manifest: Manifest, directory: Path) -> Any:
    estimator = restricted_load(payload, manifest.algorithm, manifest.trusted)
    if manifest.boosters or any(name.startswith("shared.boosters.") for name in manifest.trusted + (manifest.algorithm,)):
        from shared.boosters import attach_boosters  # XGBoost's or LightGBM's own loader, from their own files

        attach_boosters(estimator, directory, manifest.boosters)
    n_features = feature_count(estimator)
    n_classes = len(getattr(estimator, "classes_", ()) if not manifest.multi_output else ())
    if n_features != len(manifest.features) or n_classes != len(manifest.class_names):
        raise ModelLoadError(
            f"consistency check failed for {manifest.name!r}: estimator takes {n_features} features and "
            f"{n_classes} classes, manifest lists {len(manifest.features)} and {len(manifest.class_names)}: "
            f"{RETRAIN_HINT}"
        )
    return estimator


def feature_count(estimator: Any) -> int | None:
    """How many features a fitted estimator takes: n_features_in_, or 1 for an IsotonicRegression (which says so by
    its thresholds alone); None when it does not say."""
    count = getattr(estimator, "n_features_in_", None)
    if count is None and hasattr(estimator, "X_thresholds_"):
        return 1
    return count


def load_model(directory: Path, expected_name: str) -> tuple[Any, Manifest]:
    """Verify, then unpickle, the model in `directory`."""
    manifest, _ = verify_model(directory, expected_name)
    return unpickle(directory, manifest), manifest
