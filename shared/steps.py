"""The estimators inside an estimator: a Pipeline's steps, a ColumnTransformer's transformers, an ensemble's members,
a meta-estimator's inner one, all the way down (what the serving runtime adapts in a loaded copy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Wrapper:
    """A step the server wrapped around the user's (shared/estimators.py): its children are the inner step's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner


def children(estimator: Any) -> list[Any]:
    """The estimators inside a Pipeline, a ColumnTransformer, a FeatureUnion or a meta-estimator."""
    found: list[Any] = []
    for attribute in ("steps", "transformer_list"):
        found += [step for _, step in getattr(estimator, attribute, None) or []]
    found += [transformer for _, transformer, _ in getattr(estimator, "transformers_", None) or []]
    for attribute in ("estimator_", "regressor_", "transformer_", "final_estimator_"):
        if getattr(estimator, attribute, None) is not None:
            found.append(getattr(estimator, attribute))
    members = getattr(estimator, "estimators_", None)  # a list, or (gradient boosting) an array of trees
    if members is not None:
        found += [member for member in np.asarray(members, dtype=object).ravel().tolist()]
    return [child.inner if isinstance(child, Wrapper) else child
            for child in found if not isinstance(child, str)]  # "drop", "passthrough"


def every_step(estimator: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """Each estimator in `estimator` once, itself first: a caller may change a step before its own are looked for."""
    seen = set() if seen is None else seen
    if id(estimator) in seen:
        return
    seen.add(id(estimator))
    yield estimator
    for child in children(estimator):
        yield from every_step(child, seen)
