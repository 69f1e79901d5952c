"""XGBoost and LightGBM models, served through their libraries' own loaders from their own files.

A booster never reaches the handler as a pickle. `make import-model` writes each one in its library's own format
beside the artifact (`booster-<n>.ubj`, XGBoost's binary JSON; `booster-<n>.txt`, LightGBM's text model) and puts a
`BoosterClassifier` or `BoosterRegressor` where the booster's scikit-learn wrapper stood (alone, as a Pipeline's step,
inside an ensemble). Their pickled state is data only: which file, which library, the classes, how many features.
At start the handler checks each file against the SHA-256 the manifest records, then loads it with
`xgboost.XGBClassifier().load_model` / `XGBRegressor` or `lightgbm.Booster(model_file=...)`, and predicts as the
library's own scikit-learn wrapper does (XGBoost: that wrapper itself; LightGBM: its rule, the argmax of the
probabilities over its classes). The library is imported only then: a model without a booster never loads one, and an
image carries a booster library only when its model needs it (`requirements-model.txt` in the version's folder).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from shared.errors import ModelLoadError

XGBOOST, LIGHTGBM = "xgboost", "lightgbm"
DISTRIBUTIONS = {XGBOOST: "xgboost-cpu", LIGHTGBM: "lightgbm"}  # what pip installs for each library
SUFFIXES = {XGBOOST: ".ubj", LIGHTGBM: ".txt"}
REQUIREMENTS_FILE = "requirements-model.txt"


class _Booster(BaseEstimator):
    """A booster in its library's own file, with what its wrapper knew: task, classes, feature count."""

    def __init__(self, library: str = XGBOOST, file: str = "", n_features: int = 0) -> None:
        self.library = library
        self.file = file
        self.n_features = n_features

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_loaded", None)  # never pickled: the file is the booster
        return state

    @property
    def n_features_in_(self) -> int:
        return self.n_features

    def __sklearn_is_fitted__(self) -> bool:
        return True  # it stands for a fitted booster; its file is loaded at start

    def fit(self, X: Any, y: Any = None) -> "_Booster":
        raise NotImplementedError("a booster is trained with its library; this serves one already trained")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # both libraries take a missing value as NaN
        return tags

    def attach(self, directory: Path, sha256: str) -> None:
        """Load the booster from its file in `directory`, once its bytes match the manifest's SHA-256."""
        path = directory / self.file
        if not path.is_file():
            raise ModelLoadError(f"no booster file at {path}: import the model again")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha256:
            raise ModelLoadError(f"SHA-256 check failed for {path}: manifest says {sha256}, file is {actual}; the "
                                 f"booster was changed or replaced: import the model again")
        try:
            self._loaded = self._load(path)
        except ImportError:
            raise ModelLoadError(f"{path.name} is a {self.library} model and {self.library} is not installed: pip "
                                 f"install -r {REQUIREMENTS_FILE} (the image installs it)") from None
        except Exception as exc:  # noqa: BLE001 - the library's own loader refusing its file
            raise ModelLoadError(f"{self.library} cannot load {path.name} ({type(exc).__name__}: {exc})") from None

    XGBOOST_WRAPPER = ""  # the XGBoost scikit-learn wrapper that loads and predicts for this kind

    def _load(self, path: Path) -> Any:
        """The library's own loader on its own file: XGBoost's wrapper of this kind, or LightGBM's Booster."""
        if self.library == XGBOOST:
            import xgboost

            model = getattr(xgboost, self.XGBOOST_WRAPPER)()
            model.load_model(path)
            return model
        import lightgbm

        return lightgbm.Booster(model_file=str(path))

    def booster(self) -> Any:
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            raise ModelLoadError(f"booster {self.file} was never attached")
        return loaded

    @staticmethod
    def _rows(X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)


class BoosterClassifier(ClassifierMixin, _Booster):
    XGBOOST_WRAPPER = "XGBClassifier"

    def __init__(self, library: str = XGBOOST, file: str = "", n_features: int = 0, classes: Any = None) -> None:
        super().__init__(library, file, n_features)
        self.classes = classes

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        booster = self.booster()
        if self.library == XGBOOST:
            return booster.predict_proba(self._rows(X))
        proba = np.asarray(booster.predict(self._rows(X)))
        return np.vstack((1.0 - proba, proba)).transpose() if proba.ndim == 1 else proba

    def predict(self, X: Any) -> np.ndarray:
        if self.library == XGBOOST:  # the wrapper's own rule: indices into its classes 0..k-1
            return self.classes_[np.asarray(self.booster().predict(self._rows(X)), dtype=np.intp)]
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]  # LGBMClassifier.predict's rule


class BoosterRegressor(RegressorMixin, _Booster):
    XGBOOST_WRAPPER = "XGBRegressor"

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.booster().predict(self._rows(X)))


def boosters_in(estimator: Any) -> list[_Booster]:
    """Every BoosterClassifier and BoosterRegressor in a loaded estimator, in a fixed order."""
    found: list[_Booster] = []
    seen: set[int] = set()

    def visit(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, _Booster):
            found.append(node)
            return
        if isinstance(node, (list, tuple)):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            for item in node.values():
                visit(item)
        elif isinstance(node, BaseEstimator):
            for item in vars(node).values():
                visit(item)

    visit(estimator)
    return found


def attach_boosters(estimator: Any, directory: Path, recorded: tuple[dict[str, Any], ...]) -> None:
    """Load every booster of `estimator` from its file, each checked against the manifest's record of it."""
    by_file = {entry["file"]: entry for entry in recorded}
    found = boosters_in(estimator)
    if sorted(b.file for b in found) != sorted(by_file):
        raise ModelLoadError(f"the artifact's boosters ({', '.join(b.file for b in found) or 'none'}) are not the "
                             f"manifest's ({', '.join(by_file) or 'none'}): import the model again")
    for booster in found:
        if booster.library not in DISTRIBUTIONS:
            raise ModelLoadError(f"booster {booster.file}: unknown library {booster.library!r}")
        booster.attach(directory, str(by_file[booster.file]["sha256"]))
