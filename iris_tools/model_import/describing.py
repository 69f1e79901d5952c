"""What an imported estimator is: classifier or regressor, its features (names and types), its classes (in their own
types: integers stay integers), how many targets it answers, and whether it takes missing values.

Names: `feature_names_in_` (a model fitted on a DataFrame, any name a column can have), else the names given
(FEATURES=), else x0..xn.
Types: a column a fitted encoder (OneHotEncoder, OrdinalEncoder, TargetEncoder) learned strings for is a string,
with the strings it knows when it refuses others (handle_unknown="error"); every other column is a number. TYPES=
overrides ("plan=string,tenure=number", or one type per feature in order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from iris_tools.model_import.reading import ImportRefused
from shared.artifact import CLASSIFIER, NUMBER, REGRESSOR, STRING, ClassValue, Feature, class_key, feature_count
from shared.estimators import front

# Any name a DataFrame's column can have, but no control character (a log line or a header would carry it raw).
FEATURE_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


@dataclass(frozen=True)
class Description:
    algorithm: str
    task: str
    features: tuple[Feature, ...]
    class_names: tuple[ClassValue, ...]
    allow_nan: bool = False
    outputs: int = 1
    output_classes: tuple[tuple[ClassValue, ...], ...] = ()


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
    count = feature_count(estimator)
    if not isinstance(count, int) or count < 1:
        raise ImportRefused(f"cannot tell how many features {type(estimator).__name__} takes (no n_features_in_)")
    feature_names = _names(estimator, count, names)
    strings = _string_columns(estimator, count)
    kinds = _types(feature_names, types) if types else {i: STRING if i in strings else NUMBER for i in range(count)}
    features = tuple(Feature(name, name, kinds[i], strings.get(i) if kinds[i] == STRING else None)
                     for i, name in enumerate(feature_names))
    classes = getattr(estimator, "classes_", None)
    if task == CLASSIFIER and isinstance(classes, list):  # one array of classes per output
        per_output = tuple(_classes(estimator, output) for output in classes)
        return Description(algorithm, task, features, (), takes_nan(estimator), len(per_output), per_output)
    if task == CLASSIFIER:
        return Description(algorithm, task, features, _classes(estimator, classes), takes_nan(estimator))
    answer = np.asarray(own_answer(estimator, features, [feature.example() for feature in features]))
    outputs = int(answer.shape[1]) if answer.ndim == 2 and answer.shape[1] > 1 else 1
    return Description(algorithm, task, features, (), takes_nan(estimator), outputs)


def own_answer(estimator: Any, features: tuple[Feature, ...], row: list[Any]) -> Any:
    """The estimator's own predict on one row, given as it was fitted (a DataFrame when it knows column names)."""
    return own_answers(estimator, features, [row])


def own_answers(estimator: Any, features: tuple[Feature, ...], rows: list[list[Any]], method: str = "predict") -> Any:
    """The estimator's own predict (or `method`) on rows, given as it was fitted (a DataFrame when it knows column
    names)."""
    if getattr(estimator, "feature_names_in_", None) is not None:
        import pandas

        frame = pandas.DataFrame(rows, columns=[feature.name for feature in features])
        for feature in features:
            if feature.type != STRING:
                frame[feature.name] = frame[feature.name].astype("float64")
        return getattr(estimator, method)(frame)
    return getattr(estimator, method)(np.array(rows, dtype=object if any(f.type == STRING for f in features)
                                               else np.float64))


def takes_nan(estimator: Any) -> bool:
    """Whether the step that receives the rows takes a missing value (scikit-learn's `allow_nan` input tag): a
    Pipeline's first step's; a ColumnTransformer's when every transformer that gets columns does (a passthrough
    column hands it on, to the step after)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.utils import get_tags

    steps = [step for _, step in getattr(estimator, "steps", None) or [] if step not in (None, "passthrough")]
    if steps:
        first, after = steps[0], steps[1:]
        if isinstance(first, ColumnTransformer):
            used = [transformer for _, transformer, columns in first.transformers_
                    if not (isinstance(transformer, str) and transformer == "drop") and len(list(columns))]
            return all(takes_nan(_pipeline(after)) if isinstance(t, str) else takes_nan(t) for t in used)
        return takes_nan(first)
    if estimator is None:
        return False
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except (AttributeError, TypeError, ValueError):
        return False


def _pipeline(steps: list[Any]) -> Any:
    """The steps after a Pipeline's first, as a Pipeline of their own (None when there are none)."""
    from sklearn.pipeline import make_pipeline

    return make_pipeline(*steps) if steps else None


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
            raise ImportRefused(f"feature {name!r}: a feature's name is 1 to 200 characters with no control "
                                f"character (rename the column, or give FEATURES=)")
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


def _classes(estimator: Any, classes: Any) -> tuple[ClassValue, ...]:
    """The classes in their own types (numpy's integers, booleans and strings as JSON's), each a distinct key."""
    if classes is None or np.ndim(classes) != 1:
        raise ImportRefused(f"{type(estimator).__name__}: its classes_ is not a list of classes")
    values = []
    for value in np.asarray(classes).tolist():
        if not isinstance(value, (str, bool, int, float)):
            raise ImportRefused(f"class {value!r} of {type(estimator).__name__} is not a string, a number or a "
                                f"boolean")
        values.append(value)
    keys = [class_key(value) for value in values]
    if len(set(keys)) != len(keys):
        raise ImportRefused(f"classes {values}: two classes read the same as text")
    return tuple(values)
