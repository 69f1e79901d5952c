"""What an imported estimator is: classifier or regressor, its features (names and types), its classes.

Names: `feature_names_in_` (a model fitted on a DataFrame), else the names given (FEATURES=), else x0..xn.
Types: a column a fitted encoder (OneHotEncoder, OrdinalEncoder, TargetEncoder) learned strings for is a string,
with the strings it knows when it refuses others (handle_unknown="error"); every other column is a number. TYPES=
overrides ("plan=string,tenure=number", or one type per feature in order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from iris_tools.model_import.reading import ImportRefused
from shared.artifact import CLASSIFIER, NUMBER, REGRESSOR, STRING, Feature
from shared.estimators import front

FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Description:
    algorithm: str
    task: str
    features: tuple[Feature, ...]
    class_names: tuple[str, ...]


def describe(estimator: Any, names: list[str] | None = None, types: str | None = None) -> Description:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    algorithm = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if not hasattr(estimator, "predict"):
        raise ImportRefused(f"the file holds a {type(estimator).__name__}, which does not predict: import a "
                            f"classifier or a regressor (or a Pipeline ending in one)")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise ImportRefused(f"the file holds a {type(estimator).__name__} that is not fitted: fit it, then save "
                            f"it again") from None
    except TypeError as exc:
        raise ImportRefused(f"the file holds no scikit-learn estimator ({exc})") from None
    if is_classifier(estimator):
        task = CLASSIFIER
    elif is_regressor(estimator):
        task = REGRESSOR
    else:
        raise ImportRefused(f"the file holds a {type(estimator).__name__}, which is neither a classifier nor a "
                            f"regressor (clusterers and transformers are not served)")
    count = getattr(estimator, "n_features_in_", None)
    if not isinstance(count, int) or count < 1:
        raise ImportRefused(f"cannot tell how many features {type(estimator).__name__} takes (no n_features_in_)")
    feature_names = _names(estimator, count, names)
    strings = _string_columns(estimator, count)
    kinds = _types(feature_names, types) if types else {i: STRING if i in strings else NUMBER for i in range(count)}
    features = tuple(Feature(name, name, kinds[i], strings.get(i) if kinds[i] == STRING else None)
                     for i, name in enumerate(feature_names))
    return Description(algorithm, task, features, _classes(estimator) if task == CLASSIFIER else ())


def _names(estimator: Any, count: int, given: list[str] | None) -> list[str]:
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None:
        found = [str(name) for name in fitted]
        if given and given != found:
            raise ImportRefused(f"FEATURES={','.join(given)}: the model was fitted with features {','.join(found)}; "
                                f"leave FEATURES out")
    elif given:
        if len(given) != count:
            raise ImportRefused(f"FEATURES: {len(given)} names for a model of {count} features")
        found = list(given)
    else:
        found = [f"x{i}" for i in range(count)]
    for name in found:
        if not FEATURE_NAME.fullmatch(name):
            raise ImportRefused(f"feature {name!r}: a feature's name is a query parameter: letters, digits, _ . -, "
                                f"starting with a letter or _ (rename the column, or give FEATURES=)")
    if len(set(found)) != len(found):
        raise ImportRefused(f"features {','.join(found)}: a name given twice")
    return found


def _encoder(transformer: Any) -> Any:
    """The fitted encoder a column transformer's columns go through first, if any (inside a Pipeline too)."""
    if hasattr(transformer, "categories_"):
        return transformer
    for _, step in getattr(transformer, "steps", None) or []:
        if hasattr(step, "categories_"):
            return step
    return None


def _string_columns(estimator: Any, count: int) -> dict[int, tuple[str, ...] | None]:
    """Column position -> the strings its encoder knows (None: it takes any string) for each string column."""
    from sklearn.compose import ColumnTransformer

    first = front(estimator)
    groups: list[tuple[Any, list[int]]] = []
    if isinstance(first, ColumnTransformer):
        indices = first._transformer_to_input_indices
        groups = [(_encoder(transformer), list(indices.get(name, [])))
                  for name, transformer, _ in first.transformers_ if not isinstance(transformer, str)]
    elif _encoder(first) is not None:
        groups = [(_encoder(first), list(range(count)))]
    found: dict[int, tuple[str, ...] | None] = {}
    for encoder, columns in groups:
        if encoder is None:
            continue
        refuses_others = getattr(encoder, "handle_unknown", "error") == "error"
        for categories, column in zip(encoder.categories_, columns):
            known = [value for value in categories.tolist() if isinstance(value, str)]
            if known:
                found[column] = tuple(known) if refuses_others else None
    return found


def _types(names: list[str], text: str) -> dict[int, str]:
    items = [item.strip() for item in text.replace(" ", ",").split(",") if item.strip()]
    kinds: dict[int, str] = {}
    if all("=" in item for item in items):
        for item in items:
            name, _, kind = item.partition("=")
            if name not in names:
                raise ImportRefused(f"TYPES: {name!r} is not a feature ({', '.join(names)})")
            kinds[names.index(name)] = kind
        kinds = {i: kinds.get(i, NUMBER) for i in range(len(names))}
    elif len(items) == len(names):
        kinds = dict(enumerate(items))
    else:
        raise ImportRefused(f"TYPES: give name=type pairs, or one type per feature ({len(names)})")
    bad = sorted({kind for kind in kinds.values() if kind not in (NUMBER, STRING)})
    if bad:
        raise ImportRefused(f"TYPES: {bad[0]!r} is neither {NUMBER!r} nor {STRING!r}")
    return kinds


def _classes(estimator: Any) -> tuple[str, ...]:
    import numpy as np

    classes = getattr(estimator, "classes_", None)
    if classes is None or isinstance(classes, list) or np.ndim(classes) != 1:
        raise ImportRefused(f"{type(estimator).__name__}: one target with classes_ is served; a multi-output "
                            f"classifier is not")
    names = tuple(str(value) for value in np.asarray(classes).tolist())
    if len(set(names)) != len(names):
        raise ImportRefused(f"classes {names}: two classes read the same as text")
    return names
