"""A verified, loaded model version: predictions as class indices, class names and per-class scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.artifact import Manifest, load_model
from shared.inputs import FeatureIndex


class ServedModel:
    def __init__(self, estimator: Any, manifest: Manifest) -> None:
        self.estimator = estimator
        self.manifest = manifest
        self.name = manifest.name
        self.features = FeatureIndex(manifest.features)
        # estimator.classes_[i] is called manifest.class_names[i]; scikit-learn keeps classes_ sorted.
        self._classes = np.asarray(estimator.classes_)
        self._class_names = np.array(manifest.class_names, dtype=object)

    @classmethod
    def load(cls, directory: Path, name: str) -> "ServedModel":
        estimator, manifest = load_model(directory, name)
        return cls(estimator, manifest)

    def predict_indices(self, rows: np.ndarray) -> np.ndarray:
        """Position of each row's predicted class in the manifest's class names."""
        return np.searchsorted(self._classes, self.estimator.predict(rows))

    def predict(self, rows: np.ndarray) -> list[str]:
        return self._class_names[self.predict_indices(rows)].tolist()

    def decision_scores(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's decision_function as [rows, classes]; a binary model's one score becomes (-s, s)."""
        scores = np.asarray(self.estimator.decision_function(rows), dtype=np.float64)
        return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
