"""A fitted scikit-learn estimator or Pipeline the handler did not train, made to take rows as arrays.

A model fitted on a DataFrame selects its columns by name (a ColumnTransformer's `["plan"]`) and remembers the
names (`feature_names_in_`). The serving runtime has no pandas: the handler builds each request's rows as a
numpy array in the manifest's feature order, which is the order the model was fitted with. `positional` turns
every ColumnTransformer's column names into the positions they were fitted at (its own
`_transformer_to_input_indices`) and drops the remembered names, so scikit-learn takes the array without a
warning a request, and computes exactly what it computes for the DataFrame. It changes the loaded copy only: the
artifact on disk stays the user's bytes.

A table with string columns arrives as one array of objects. A DataFrame would hand each transformer of the first
ColumnTransformer its columns with their own dtype, so those that take only number columns (a scaler, a
FunctionTransformer(np.log1p)) are handed theirs as float64 here too (`_Float64`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.forests import in_turn
from shared.steps import Wrapper, every_step


class _Float64(Wrapper):
    """A fitted transformer of number columns, handed them as float64 (as a DataFrame's column would be)."""

    def transform(self, X: Any, **params: Any) -> Any:
        return self.inner.transform(np.asarray(X, dtype=np.float64), **params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def front(estimator: Any) -> Any:
    """The step that receives the rows as they come: a Pipeline's first step, all the way down."""
    while getattr(estimator, "steps", None):
        estimator = estimator.steps[0][1]
    return estimator


def positional(estimator: Any, numbers: frozenset[int] = frozenset()) -> Any:
    """`estimator`, every ColumnTransformer in it selecting by position, and no step remembering names.
    `numbers`: the positions of the number columns when some are strings (the rows then come as objects)."""
    from sklearn.compose import ColumnTransformer

    first = front(estimator)
    if isinstance(first, ColumnTransformer) and numbers:
        indices = first._transformer_to_input_indices
        first.transformers_ = [
            (name, _Float64(transformer) if not isinstance(transformer, str) and indices.get(name)
             and set(indices[name]) <= numbers else transformer, columns)
            for name, transformer, columns in first.transformers_]

    for node in every_step(estimator):
        if isinstance(node, ColumnTransformer) and hasattr(node, "feature_names_in_"):
            indices = node._transformer_to_input_indices
            node.transformers_ = [(name, transformer, list(indices.get(name, [])))
                                  for name, transformer, _ in node.transformers_]
            name, transformer, _ = node._remainder
            node._remainder = (name, transformer, list(indices.get(name, [])))
        if "feature_names_in_" in getattr(node, "__dict__", {}):
            del node.feature_names_in_
    return estimator


def as_served(estimator: Any, manifest: Any) -> Any:
    """The estimator as the server asks it: an imported one takes its rows as arrays in the manifest's feature order
    (string columns, when it has any, kept as objects); one the notebook trained, as it is. Forests in either predict
    their trees in turn (shared/forests.py)."""
    if estimator is None:
        return None
    if manifest.source is None:
        return in_turn(estimator)
    from shared.artifact import STRING

    numbers = frozenset(i for i, f in enumerate(manifest.features) if f.type != STRING)
    return in_turn(positional(estimator, numbers if len(numbers) < len(manifest.features) else frozenset()))
