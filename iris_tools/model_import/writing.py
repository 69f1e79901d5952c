"""functions/<NAME>/ for an imported model: the three-line main.py every version has, the artifact (joblib, as the
file's estimator loaded), its manifest, and for a linear classifier of numbers its decision rule (the iris
versions' fast path: answered without scikit-learn, and by it near a tie, shared/linear.py). Written in a hidden folder beside it, loaded there by the shared
handler and asked one row (its answer must be the estimator's own), then renamed into place: whole, or nothing.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from iris_tools.model_import.describing import Description
from iris_tools.model_import.reading import ImportRefused, Loaded
from shared.artifact import (ARTIFACT_FILE, MANIFEST_FILE, RULE_FILE, STRING, Manifest, is_imported, json_safe,
                             sha256_of)
from shared.errors import ModelLoadError
from shared.safe_pickle import survey

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAIN = '''"""Model version `{name}`: its name is this folder's; the shared handler does the rest."""

from pathlib import Path

from shared.function import serve_model

predict = serve_model(Path(__file__).parent)
'''


def check_name(name: str, functions_dir: Path, replace: bool = False) -> None:
    """A name the folder, the image tag and the answers can all carry, and not taken (with `replace`, taken only by
    an imported model, which is replaced: never a version the training notebook makes)."""
    if not NAME.fullmatch(name or ""):
        raise ImportRefused(f"NAME={name!r}: a model's name is its folder's and its image tag's: lowercase letters, "
                            f"digits and _, starting with a letter (at most 40)")
    folder = functions_dir / name
    if not folder.exists():
        return
    if not replace:
        raise ImportRefused(f"NAME={name}: functions/{name}/ already exists; choose another name, or remove that "
                            f"folder first (REPLACE=1 replaces a model imported before)")
    if not is_imported(folder):
        raise ImportRefused(f"NAME={name}: functions/{name}/ is not an imported model (notebooks/catalogue.py "
                            f"trains it); REPLACE replaces only models imported before")


def sample_row(description: Description) -> list[Any]:
    """One row the model takes (Feature.example of each feature)."""
    return [feature.example() for feature in description.features]


def _own_answer(estimator: Any, description: Description, row: list[Any]) -> Any:
    """The estimator's own predict on `row`, given as it was fitted (a DataFrame when it knows column names)."""
    if getattr(estimator, "feature_names_in_", None) is not None:
        import pandas

        frame = pandas.DataFrame([row], columns=[feature.name for feature in description.features])
        for feature in description.features:
            if feature.type != STRING:
                frame[feature.name] = frame[feature.name].astype("float64")
        return estimator.predict(frame)[0]
    return estimator.predict(np.array([row], dtype=object if any(f.type == STRING for f in description.features)
                                      else np.float64))[0]


def _rule(estimator: Any, description: Description) -> dict[str, Any] | None:
    """A linear classifier of numbers (not a Pipeline: its steps transform the rows first) as its decision rule."""
    if description.task != "classifier" or any(f.type == STRING for f in description.features):
        return None
    from shared.linear import export

    return export(estimator)


def write_version(loaded: Loaded, description: Description, name: str, functions_dir: Path,
                  replace: bool = False) -> Manifest:
    import joblib
    import sklearn

    from shared.model import ServedModel

    check_name(name, functions_dir, replace)
    buffer = io.BytesIO()
    joblib.dump(loaded.estimator, buffer)
    payload = buffer.getvalue()
    rule = _rule(loaded.estimator, description)
    encoded_rule = None if rule is None else (json.dumps(rule) + "\n").encode()
    manifest = Manifest(
        name=name, algorithm=description.algorithm, params=json_safe(loaded.estimator.get_params(deep=False)),
        features=description.features, class_names=description.class_names, sklearn_version=sklearn.__version__,
        sha256=sha256_of(payload), training_accuracy=None, training_rows=None,
        python_version=platform.python_version(), task=description.task,
        trusted=tuple(item for item in survey(payload) if item != description.algorithm), source=loaded.source,
        rule_sha256=None if encoded_rule is None else sha256_of(encoded_rule))
    staging = functions_dir / f".{name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        (staging / "main.py").write_text(MAIN.format(name=name))
        (staging / ARTIFACT_FILE).write_bytes(payload)
        if encoded_rule is not None:
            (staging / RULE_FILE).write_bytes(encoded_rule)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        try:
            served = ServedModel.load(staging, name)
            row = sample_row(description)
            rows = np.empty((1, len(row)), dtype=served.features.dtype)
            rows[0] = row
            ours, theirs = served.predict(rows)[0], _own_answer(loaded.estimator, description, row)
        except (ModelLoadError, ValueError, TypeError) as exc:
            raise ImportRefused(f"the shared handler cannot serve it ({type(exc).__name__}: {exc})") from None
        same = (abs(float(ours) - float(theirs)) <= 1e-9 * max(1.0, abs(float(theirs))) if description.task ==
                "regressor" else ours == str(theirs))
        if not same:
            raise ImportRefused(f"the shared handler answers {ours!r} where the estimator answers {theirs!r} for "
                                f"{row}: it cannot serve it faithfully")
        retired = functions_dir / f".{name}.replaced-{os.getpid()}"
        if replace and (functions_dir / name).exists():
            os.rename(functions_dir / name, retired)
        try:
            os.rename(staging, functions_dir / name)
        except OSError:
            if retired.exists():
                os.rename(retired, functions_dir / name)  # the model imported before stays
            raise ImportRefused(f"NAME={name}: functions/{name}/ appeared meanwhile; nothing was written") from None
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
