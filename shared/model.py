"""A verified model version: predictions as class indices, class names and per-class scores, or as numbers for a
regressor.

A linear model is served from its decision rule (`shared.linear`) with numpy and
plain floats: scikit-learn is not imported at start-up. The rare row too close to
a decision boundary for the rule to call, and any request for decision scores,
goes to scikit-learn itself, loaded (and its artifact checked again) on first use.
A model with no rule is unpickled at start-up and served by scikit-learn; an imported one (any fitted estimator or
Pipeline) takes its rows as arrays in the manifest's feature order (`shared.estimators.positional`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from shared.artifact import RETRAIN_HINT, Manifest, open_model, unpickle
from shared.batching import Batcher
from shared.config import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS
from shared.errors import InvalidInput, ModelLoadError, RowsRefused
from shared.estimators import as_served
from shared.inputs import FeatureIndex
from shared.linear import LinearRule
from shared.predictor_process import PredictorProcess

SMALL_BATCH = 8


class ServedModel:
    def __init__(self, directory: Path, manifest: Manifest, rule: LinearRule | None,
                 batch_size: int = DEFAULT_BATCH_SIZE, batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
                 own_process: bool = False) -> None:
        self.directory = directory
        self.manifest = manifest
        self.name = manifest.name
        self.features = FeatureIndex(manifest.features, manifest.allow_nan)
        self.rule = rule
        self._class_names = np.array(manifest.class_names, dtype=object)
        self._names = list(manifest.class_names)
        self._estimator: Any = None
        self._loading = threading.Lock()
        # One estimator predict at a time; concurrent requests' rows together (shared/batching.py) when the import
        # found that the model answers rows together exactly as each alone.
        batch = batch_size if manifest.batch else 1
        # Whether requests' rows meet in one call: then the web layer announces each prediction request as it
        # begins (a batch may wait for it). A decision rule answers rows itself, one at a time, faster than any call.
        self.batches = rule is None and batch > 1
        # A model whose requests batch predicts in a process of its own (PREDICTOR_PROCESS; shared/predictor_process.py)
        self.process = PredictorProcess(directory, manifest.name) if own_process and self.batches else None
        self._batcher = Batcher(lambda rows: self._asked("predict", rows), batch, batch_wait_ms / 1000)
        self._probabilities = Batcher(lambda rows: np.asarray(self._asked("predict_proba", rows), dtype=np.float64),
                                      batch)
        if self.process is not None:  # a server worker forked from the loading process starts its child at once
            os.register_at_fork(after_in_child=self._start_process_soon)

    def _asked(self, method: str, rows: np.ndarray) -> np.ndarray:
        """The estimator's `method` of `rows`: in its own process when it has one, else here."""
        if self.process is not None:
            return self.process.predict(method, rows)
        return np.asarray(getattr(self.estimator, method)(rows))

    def _start_process_soon(self) -> None:
        threading.Thread(target=self._start_process, name="predictor-start", daemon=True).start()

    def _start_process(self) -> None:
        try:
            self.process.start()  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - the first predict starts it again, and answers its failure
            logging.getLogger(__name__).warning("the predictor process of %s did not start: %s", self.name, exc)

    @classmethod
    def load(cls, directory: Path, name: str, batch_size: int = DEFAULT_BATCH_SIZE,
             batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS, own_process: bool = False) -> "ServedModel":
        manifest, exported, estimator = open_model(directory, name)
        rule = None
        if exported is not None:
            try:
                rule = LinearRule(exported, len(manifest.features))
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelLoadError(f"decision rule of {name!r} is unusable ({exc}): {RETRAIN_HINT}") from None
            if rule.n_classes != len(manifest.class_names):
                raise ModelLoadError(f"decision rule of {name!r} has {rule.n_classes} classes, the manifest "
                                     f"{len(manifest.class_names)}: {RETRAIN_HINT}")
        model = cls(directory, manifest, rule, batch_size, batch_wait_ms, own_process)
        model._estimator = as_served(estimator, manifest)  # no rule: scikit-learn serves every request, loaded at start-up
        return model

    def load_estimator(self) -> Any:
        """The unpickled estimator, loaded once (threads may ask at the same time)."""
        if self._estimator is None:
            with self._loading:
                if self._estimator is None:
                    self._estimator = unpickle(self.directory, self.manifest)
        return self._estimator

    @property
    def estimator(self) -> Any:
        return self.load_estimator()

    def _estimator_predict(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's own predict of these rows, one call at a time, with the rows of requests that arrived
        meanwhile (shared/batching.py); a ValueError of its own (rows it refuses) is the client's 422, not a 500.
        One call at a time: a tree ensemble's predict is mostly Python over its trees (the GIL) with native
        stretches that release it, and request threads that overlap them hand the GIL back and forth (a
        HistGradientBoostingClassifier served half the requests/s at 8 connections that way)."""
        try:
            return self._batcher.predict(rows)
        except ValueError as exc:
            raise RowsRefused(f"model {self.name!r} cannot answer these rows: {str(exc)[:300]}", field="rows") from None

    def announce(self) -> None:
        """A prediction request has begun (see Batcher.announce); `withdraw` when it ends."""
        self._batcher.announce()

    def withdraw(self) -> None:
        self._batcher.withdraw()

    @property
    def last_batch_rows(self) -> int:
        """The rows of the estimator call that answered this thread's last request."""
        return self._batcher.last_batch_rows

    def _sklearn_indices(self, rows: np.ndarray) -> np.ndarray:
        # scikit-learn keeps classes_ sorted: a label's position is its class index.
        return np.searchsorted(self.estimator.classes_, self._estimator_predict(rows))

    def predict_indices(self, rows: np.ndarray) -> np.ndarray:
        """Position of each row's predicted class in the manifest's class names."""
        if self.rule is not None and len(rows) <= SMALL_BATCH:
            # Plain floats beat numpy's per-call overhead on a few rows.
            found = self._rule_indices(rows.tolist())
            if found is not None:
                return np.array(found, dtype=np.intp)
        elif self.rule is not None:
            indices, certain = self.rule.predict(rows)
            if certain.all():
                return indices
        # The whole request, so the answer is exactly scikit-learn's for these rows.
        return self._sklearn_indices(rows)

    def predict_plain(self, rows: list[tuple[float, ...]]) -> list[Any] | None:
        """A few rows' classes from the decision rule, as Python floats in and names out; None when the rule cannot
        call one of them (the caller then asks the whole request the general way)."""
        found = self._rule_indices(rows)
        return None if found is None else [self._names[index] for index in found]

    def _rule_indices(self, rows: list[Any]) -> list[int] | None:
        """Each row's class index from the decision rule, with plain floats; None when there is no rule or it
        cannot call one of the rows."""
        if self.rule is None:
            return None
        found = [self.rule.predict_one(row) for row in rows]
        return None if None in found else found  # type: ignore[return-value]

    def class_names_of(self, indices: np.ndarray) -> np.ndarray:
        """The class name at each index, as an array of str objects."""
        return self._class_names[indices]

    def predict(self, rows: np.ndarray) -> list[Any]:
        """A class per row (in its own type: a name, an integer, a boolean); a regressor's number per row; a
        multi-output model's list per row."""
        manifest = self.manifest
        if manifest.regressor:
            values = np.asarray(self._estimator_predict(rows), dtype=np.float64)
            return values.reshape(len(rows), -1).tolist() if manifest.multi_output else values.ravel().tolist()
        if manifest.multi_output:  # as its predict answers (a ClassifierChain answers its integer classes as floats)
            return self._estimator_predict(rows).reshape(len(rows), manifest.outputs).tolist()
        if self.rule is not None and len(rows) <= SMALL_BATCH:  # a few rows: no arrays in between
            named = self.predict_plain(rows.tolist())
            if named is not None:
                return named
        return self.class_names_of(self.predict_indices(rows)).tolist()

    def predict_one(self, row: tuple[Any, ...]) -> Any:
        """The class name (a regressor's number) for one row: the request path of GET /."""
        if self.rule is not None:
            index = self.rule.predict_one(row)
            if index is not None:
                return self._names[index]
        rows = np.empty((1, len(row)), dtype=self.features.dtype)
        rows[0] = row
        if self.manifest.regressor or self.manifest.multi_output:
            return self.predict(rows)[0]
        return self._names[int(self._sklearn_indices(rows)[0])]

    def without_probabilities(self) -> str:
        """Why this model answers no probabilities, and what it offers instead (the 400's message)."""
        if self.manifest.regressor or self.manifest.multi_output:
            instead = "its prediction only"
        elif self.rule is not None or (self.manifest.source is not None
                                       and hasattr(self.estimator, "decision_function")):
            instead = "decision scores (V2 output decision_scores)"
        else:
            instead = "its class only"
        return (f"model {self.name!r} ({self.manifest.algorithm}) answers no probabilities: it has no predict_proba; "
                f"it offers {instead}")

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """predict_proba of these rows as [rows, classes], columns in the manifest's class order (scikit-learn's
        classes_); a 400 naming the model and what it offers instead when it has none."""
        if not self.manifest.probabilities:
            raise InvalidInput(self.without_probabilities(), field="outputs", code="no_probabilities")
        try:
            return self._probabilities.predict(rows)
        except ValueError as exc:
            raise RowsRefused(f"model {self.name!r} cannot answer these rows: {str(exc)[:300]}", field="rows") from None

    def decision_scores(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's decision_function as [rows, classes]; a binary model's one score becomes (-s, s)."""
        scores = np.asarray(self.estimator.decision_function(rows), dtype=np.float64)
        return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
