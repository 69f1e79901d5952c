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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from iris_tools.model_import.booster_files import write_boosters
from iris_tools.model_import.describing import Description, own_answer, own_answers
from iris_tools.model_import.reading import ImportRefused, Loaded
from shared.artifact import (ARTIFACT_FILE, MANIFEST_FILE, RULE_FILE, STRING, Manifest, is_imported, json_safe,
                             sha256_of)
from shared.boosters import REQUIREMENTS_FILE
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


def nan_row(description: Description) -> list[Any] | None:
    """The sample row with every number feature missing (NaN); None when the model has no number feature."""
    row = sample_row(description)
    numbers = [i for i, feature in enumerate(description.features) if feature.type != STRING]
    if not numbers:
        return None
    for i in numbers:
        row[i] = float("nan")
    return row


def checked_nan(loaded: Loaded, description: Description) -> Description:
    """The description with `allow_nan` as the estimator shows it: a model whose tags say it takes a missing value
    but whose predict refuses one (a passthrough column into a step that does not) is served as not taking it."""
    row = nan_row(description)
    if not description.allow_nan or row is None:
        return description
    try:
        answer = np.asarray(own_answer(loaded.own, description.features, row))
    except (ValueError, TypeError):
        return replace(description, allow_nan=False)
    if answer.dtype.kind == "f" and np.isnan(answer).any():  # it takes NaN only to answer NaN (IsotonicRegression)
        return replace(description, allow_nan=False)
    return description


def batch_exact(loaded: Loaded, description: Description, count: int = 24) -> bool:
    """Whether the estimator answers rows predicted together exactly (bit for bit) as each alone: then the handler
    may predict concurrent requests' rows in one call (shared/batching.py). A GaussianProcessRegressor's kernel
    products, for one, differ in their last bits with the batch's size; such a model is asked one request at a time."""
    generator = np.random.default_rng(0)
    rows = []
    for _ in range(count):
        row = []
        for feature in description.features:
            if feature.type == STRING:
                known = feature.categories or ("x",)
                row.append(known[int(generator.integers(len(known)))])
            else:
                row.append(float(np.round(generator.normal() * 2, 3)))
        rows.append(row)
    try:
        together = np.asarray(own_answers(loaded.own, description.features, rows))
        alone = [np.asarray(own_answers(loaded.own, description.features, [row])) for row in rows]
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return all(np.array_equal(together[i:i + 1], single, equal_nan=together.dtype.kind == "f")
               for i, single in enumerate(alone))


def offers_probabilities(loaded: Loaded, description: Description) -> bool:
    """Whether a classifier of one output answers predict_proba with a column per class (an SVC fitted without
    probability=True, a LinearSVC or a hinge-loss SGDClassifier has none; their hasattr says so)."""
    if description.task != "classifier" or description.outputs != 1 or not hasattr(loaded.own, "predict_proba"):
        return False
    try:
        found = np.asarray(own_answers(loaded.own, description.features, [sample_row(description)], "predict_proba"),
                           dtype=np.float64)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, NotImplementedError):
        return False
    return found.shape == (1, len(description.class_names))


def same_answer(ours: Any, theirs: Any, regressor: bool) -> bool:
    """Ours (the handler's, as JSON would carry it) and the estimator's own for one row: a class exactly and of
    the same type (1 is not True), a number to 1e-9 relative, a multi-output row element by element."""
    theirs = np.asarray(theirs).tolist()
    if isinstance(theirs, list) != isinstance(ours, list):
        return False
    if isinstance(theirs, list):
        return len(ours) == len(theirs) and all(same_answer(a, b, regressor) for a, b in zip(ours, theirs))
    if regressor:
        if ours != ours or theirs != theirs:  # NaN: a model's answer out of its range (IsotonicRegression's)
            return ours != ours and theirs != theirs
        return bool(abs(float(ours) - float(theirs)) <= 1e-9 * max(1.0, abs(float(theirs))))
    return type(ours) is type(theirs) and ours == theirs


def _rule(estimator: Any, description: Description) -> dict[str, Any] | None:
    """A linear classifier of numbers (not a Pipeline: its steps transform the rows first) as its decision rule."""
    if description.task != "classifier" or description.outputs > 1 or any(f.type == STRING
                                                                           for f in description.features):
        return None
    from shared.linear import export

    return export(estimator)


def write_version(loaded: Loaded, description: Description, name: str, functions_dir: Path,
                  replace: bool = False) -> Manifest:
    import joblib
    import sklearn

    from shared.model import ServedModel

    check_name(name, functions_dir, replace)
    staging = functions_dir / f".{name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        boosters, requirements = write_boosters(loaded.estimator, staging)  # names each booster's file first
        buffer = io.BytesIO()
        joblib.dump(loaded.estimator, buffer)
        payload = buffer.getvalue()
        rule = _rule(loaded.estimator, description)
        encoded_rule = None if rule is None else (json.dumps(rule) + "\n").encode()
        manifest = Manifest(
            name=name, algorithm=description.algorithm, params=json_safe(loaded.own.get_params(deep=False)),
            features=description.features, class_names=description.class_names, sklearn_version=sklearn.__version__,
            sha256=sha256_of(payload), training_accuracy=None, training_rows=None,
            python_version=platform.python_version(), task=description.task,
            trusted=tuple(item for item in survey(payload) if item != description.algorithm),
            source=loaded.source, rule_sha256=None if encoded_rule is None else sha256_of(encoded_rule),
            allow_nan=description.allow_nan, outputs=description.outputs, output_classes=description.output_classes,
            boosters=boosters, batch=batch_exact(loaded, description),
            probabilities=offers_probabilities(loaded, description))
        (staging / "main.py").write_text(MAIN.format(name=name))
        (staging / ARTIFACT_FILE).write_bytes(payload)
        if requirements:
            (staging / REQUIREMENTS_FILE).write_text("".join(line + "\n" for line in requirements))
        if encoded_rule is not None:
            (staging / RULE_FILE).write_bytes(encoded_rule)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        try:
            served = ServedModel.load(staging, name)
            rows = [row for row in (sample_row(description), nan_row(description) if description.allow_nan else None)
                    if row is not None]
            for row in rows:
                asked = np.empty((1, len(row)), dtype=served.features.dtype)
                asked[0] = row
                ours = served.predict(asked)[0]
                theirs = own_answer(loaded.own, description.features, row)[0]
                if not same_answer(ours, theirs, description.task == "regressor"):
                    raise ImportRefused(f"the shared handler answers {ours!r} where the estimator answers "
                                        f"{np.asarray(theirs).tolist()!r} for {row}: it cannot serve it faithfully")
                if manifest.probabilities:
                    ours_p = served.probabilities(asked)[0]
                    theirs_p = np.asarray(own_answers(loaded.own, description.features, [row], "predict_proba"))[0]
                    if not np.allclose(ours_p, theirs_p, rtol=0, atol=1e-12, equal_nan=True):
                        raise ImportRefused(f"the shared handler's probabilities {ours_p.tolist()} differ from the "
                                            f"estimator's {theirs_p.tolist()} for {row}: it cannot serve them faithfully")
        except (ModelLoadError, ValueError, TypeError) as exc:
            raise ImportRefused(f"the shared handler cannot serve it ({type(exc).__name__}: {exc})") from None
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
