"""XGBoost and LightGBM at import: a booster file of the library's own format read by the library's own loader
(`.json`/`.ubj` XGBoost, `.txt` LightGBM), or a scikit-learn wrapper (XGBClassifier, LGBMRegressor, ...) found in a
pickled estimator, alone or inside a Pipeline or an ensemble. Either way the booster becomes a file of its library's
format beside the artifact and a `shared.boosters.BoosterClassifier`/`BoosterRegressor` where it stood: the handler
never unpickles a booster.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from iris_tools.cli.failures import ToolError
from shared.artifact import sha256_of
from shared.boosters import (DISTRIBUTIONS, LIGHTGBM, SUFFIXES, XGBOOST, BoosterClassifier, BoosterRegressor,
                             boosters_in)

XGBOOST_SUFFIXES = (".json", ".ubj")
LIGHTGBM_SUFFIXES = (".txt",)
XGBOOST_CLASSIFYING, XGBOOST_REGRESSING = ("binary:", "multi:"), ("reg:", "count:", "survival:")
LIGHTGBM_CLASSIFYING = {"binary", "multiclass", "multiclassova"}
LIGHTGBM_REGRESSING = {"regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma", "tweedie",
                       "cross_entropy", "cross_entropy_lambda"}


class BoosterRefused(ToolError):
    """A booster file or wrapper the import cannot serve; the message says why."""


@dataclass(frozen=True)
class NativeFile:
    """What a booster's own file holds: the estimator standing in for it, and its feature names (None: none)."""

    estimator: Any
    names: list[str] | None


def _library(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise BoosterRefused(f"a {name} model needs {name}: pip install {DISTRIBUTIONS[name]} "
                             f"(requirements-tools.txt has it)") from None


def _task(library: str, objective: str) -> str:
    """classifier or regressor, by the booster's objective; a ranker's or another's is refused."""
    if library == XGBOOST and objective.startswith(XGBOOST_CLASSIFYING) or objective in LIGHTGBM_CLASSIFYING:
        return "classifier"
    if library == XGBOOST and objective.startswith(XGBOOST_REGRESSING) or objective in LIGHTGBM_REGRESSING:
        return "regressor"
    raise BoosterRefused(f"its objective {objective!r} is neither a classifier's nor a regressor's (rankers and "
                         f"other objectives are not served)")


@contextlib.contextmanager
def _library_quiet() -> Iterator[None]:
    """LightGBM's C++ core writes its own "[LightGBM] [Fatal] ..." to the process's stderr before it raises: that is
    said once, in the refusal's one line, so the descriptor points at /dev/null while the library reads."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as nowhere:
            os.dup2(nowhere.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


REWRITE = ("import sys, {library}\n"
           "booster = {library}.Booster(model_file=sys.argv[1])\n"
           "booster.save_model(sys.argv[2])\n")


def _rewritten(library: str, path: Path, scratch: Path) -> Path:
    """The file as its library writes it again, read and written in a process of its own: the user's bytes are
    parsed only there. A corrupt file can crash a C++ reader (XGBoost's UBJSON reader dies of SIGSEGV on some cut
    files, and not on every try), and a crash there is a refusal here, never the import's death; the file the
    import goes on with was written by the library's own writer."""
    import subprocess

    clean = scratch / f"rewritten{path.suffix.lower()}"
    try:
        result = subprocess.run([sys.executable, "-c", REWRITE.format(library=library), str(path), str(clean)],
                                capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise BoosterRefused(f"{library}'s loader did not finish reading it in 120 s") from None
    if result.returncode < 0:
        raise BoosterRefused(f"{library}'s loader crashed reading it (signal {-result.returncode}): it is not a "
                             f"model file {library} can read")
    if result.returncode != 0 or not clean.is_file():
        said = [line for line in result.stderr.strip().splitlines() if line.strip()]
        last = said[-1].strip()[:200] if said else f"exit status {result.returncode}"
        raise BoosterRefused(f"not a {library} model {library} can load ({last})")
    return clean


def read_native(path: Path) -> NativeFile:
    """A booster file read by its library's own loader: XGBoost's JSON or UBJSON model, LightGBM's text model."""
    suffix = path.suffix.lower()
    library = XGBOOST if suffix in XGBOOST_SUFFIXES else LIGHTGBM
    module = _library(library)
    with tempfile.TemporaryDirectory(prefix="booster-") as scratch:
        path = _rewritten(library, path, Path(scratch))
        return _described(library, module, path)


def _described(library: str, module: Any, path: Path) -> NativeFile:
    """The stand-in for a booster file the library itself wrote, with the task, classes and names it holds."""
    try:
        with _library_quiet():
            booster = module.Booster(model_file=str(path))
    except Exception as exc:  # noqa: BLE001 - the library's own loader refusing the file: said, never a traceback
        raise BoosterRefused(f"not a {library} model {library} can load ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''})") from None
    if library == XGBOOST:
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        count, names = int(booster.num_features()), booster.feature_names
    else:
        objective = str(booster.dump_model(num_iteration=0).get("objective", "")).split()[0]
        count, names = int(booster.num_feature()), booster.feature_name()
        if names == [f"Column_{i}" for i in range(count)]:  # LightGBM's own names for a table that had none
            names = None
    task = _task(library, objective)
    if task == "classifier":
        estimator: Any = BoosterClassifier(library, "", count, [])
        loaded = estimator._load(path) if library == XGBOOST else booster
        estimator.classes = loaded.classes_.tolist() if library == XGBOOST else list(
            range(max(int(booster.dump_model(num_iteration=0).get("num_class", 1)), 2)))
    else:
        estimator = BoosterRegressor(library, "", count)
        loaded = estimator._load(path) if library == XGBOOST else booster
    estimator._loaded = loaded
    if names:
        import numpy as np

        estimator.feature_names_in_ = np.array(list(names), dtype=object)
    return NativeFile(estimator, list(names) if names else None)


def _wrapper_library(node: Any) -> str | None:
    module = type(node).__module__.split(".")[0]
    if module == XGBOOST and hasattr(node, "get_booster"):
        return XGBOOST
    if module == LIGHTGBM and hasattr(node, "booster_"):
        return LIGHTGBM
    return None


def _stand_in(node: Any, library: str) -> Any:
    """The BoosterClassifier or BoosterRegressor for a fitted wrapper, holding its booster in memory until written."""
    from sklearn.base import is_classifier

    count = int(getattr(node, "n_features_in_", 0))
    if is_classifier(node):
        stand_in: Any = BoosterClassifier(library, "", count, node.classes_.tolist())
    else:
        stand_in = BoosterRegressor(library, "", count)
    stand_in._loaded = node if library == XGBOOST else node.booster_
    return stand_in


def swap_wrappers(estimator: Any) -> Any:
    """`estimator` with every XGBoost or LightGBM wrapper in it (alone, a Pipeline's step, an ensemble's member)
    replaced by its stand-in; the same wrapper twice (a list and a name-keyed Bunch of it) by the same stand-in."""
    from sklearn.base import BaseEstimator

    swapped: dict[int, Any] = {}

    def swap(node: Any) -> Any:
        library = _wrapper_library(node)
        if library is not None:
            if id(node) not in swapped:
                swapped[id(node)] = _stand_in(node, library)
            return swapped[id(node)]
        if isinstance(node, list):
            node[:] = [swap(item) for item in node]
        elif isinstance(node, tuple):
            return tuple(swap(item) for item in node)
        elif isinstance(node, dict):
            for key in list(node):
                node[key] = swap(node[key])
        elif isinstance(node, BaseEstimator) and id(node) not in swapped:
            swapped[id(node)] = node
            for key, value in list(vars(node).items()):
                new = swap(value)
                if new is not value:
                    vars(node)[key] = new
        return node

    return swap(estimator)


def write_boosters(estimator: Any, directory: Path) -> tuple[tuple[dict[str, Any], ...], list[str]]:
    """Each booster of `estimator` written in its library's own format into `directory`, named booster-<n>; what
    the manifest records of each, and the requirement lines the image installs for them."""
    recorded, libraries = [], set()
    for number, booster in enumerate(boosters_in(estimator)):
        booster.file = f"booster-{number}{SUFFIXES[booster.library]}"
        booster.booster().save_model(str(directory / booster.file))
        recorded.append({"file": booster.file, "library": booster.library,
                         "sha256": sha256_of((directory / booster.file).read_bytes())})
        libraries.add(booster.library)
    requirements = []
    for library in sorted(libraries):
        try:
            requirements.append(f"{DISTRIBUTIONS[library]}=={installed_version(DISTRIBUTIONS[library])}")
        except PackageNotFoundError:
            requirements.append(f"{library}=={installed_version(library)}")
    return tuple(recorded), requirements
