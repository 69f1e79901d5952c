"""A verified, loaded model version and its predictions as class names."""

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
        # estimator.classes_[i] is called manifest.class_names[i].
        self._class_name = {label.item() if hasattr(label, "item") else label: name
                            for label, name in zip(estimator.classes_, manifest.class_names)}

    @classmethod
    def load(cls, directory: Path, name: str) -> "ServedModel":
        estimator, manifest = load_model(directory, name)
        return cls(estimator, manifest)

    def predict(self, rows: np.ndarray) -> list[str]:
        labels = self.estimator.predict(rows)
        return [self._class_name[label] for label in labels.tolist()]
