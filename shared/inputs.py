"""Request values to a row matrix, or an InvalidInput naming the field and the problem.

A model whose features are all numbers gets a float64 matrix; one with string features (an imported Pipeline
with a OneHotEncoder) an object matrix holding floats and strs, each checked against its feature's type and, for
a string whose encoder refuses values it never saw, against the values it knows. A missing value (a JSON null, an
empty GET value) is NaN for a model that takes one (the manifest's `allow_nan`), and a 400 naming the feature for one
that does not.

Nothing here knows about HTTP: the callers hand over query parameters as
`{name: [values...]}` and request bodies as bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from shared.artifact import STRING, Feature
from shared.errors import InvalidInput, PayloadTooLarge
from shared.numbers import array_from_json, check_number

# Plain decimal notation only: float() would also take "nan", "inf" and "1_0".
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


class FeatureIndex:
    """Where each accepted name (full name or alias) goes in a row."""

    def __init__(self, features: Sequence[Feature], allow_nan: bool = False) -> None:
        self.features = tuple(features)
        self.allow_nan = allow_nan
        self.position: dict[str, int] = {}
        for index, feature in enumerate(self.features):
            self.position[feature.name] = index
            self.position[feature.alias] = index
        self.expected = ", ".join(f.name if f.alias == f.name else f"{f.alias} (or {f.name})" for f in self.features)
        self.has_strings = any(feature.type == STRING for feature in self.features)
        self.dtype = object if self.has_strings else np.float64

    def __len__(self) -> int:
        return len(self.features)

    def numbers_from_query(self, query_string: str) -> tuple[float, ...] | None:
        """The row of `length=5.8&width=3.4` for a model of number features, read in one pass; None for anything
        but every feature exactly once, by name or alias, in plain decimal and finite (escapes, a missing or
        repeated feature, a string feature, a bad value): the caller then takes the general path
        (`plain_query`, `parse_query`), which answers the same or names what is wrong."""
        if self.has_strings or not _undecoded(query_string):
            return None
        row: list[float | None] = [None] * len(self.features)
        parts = query_string.split("&")
        if len(parts) != len(row):
            return None
        for part in parts:
            name, _, text = part.partition("=")
            position = self.position.get(name)
            if position is None or row[position] is not None or not _NUMBER.fullmatch(text):
                return None
            value = float(text)
            if value - value != 0.0:  # inf (1e999): the general path's error
                return None
            row[position] = value
        return tuple(row)  # type: ignore[arg-type]

    def value(self, position: int, field: str, given: Any, from_text: bool = False) -> Any:
        """One value for the feature at `position`: a finite float for a number (from JSON, or from text), a str
        for a string (one of its categories when the model refuses others)."""
        feature = self.features[position]
        if given is None or (from_text and given == ""):
            return self.missing(position, field)
        if feature.type != STRING:
            return number_from_text(field, given) if from_text else check_number(field, given)
        if not isinstance(given, str):
            raise InvalidInput(f"{field}: expected a string ({feature.name}), got {type(given).__name__}",
                               field=field, code="not_a_string")
        if feature.categories is not None and given not in feature.categories:
            known = ", ".join(repr(c) for c in feature.categories[:20])
            raise InvalidInput(f"{field}: {given[:100]!r} is not a value {feature.name} was trained on; expected one "
                               f"of {known}", field=field, code="unknown_category")
        return given

    def missing(self, position: int, field: str) -> float:
        """NaN for a model that takes a missing value; else the 400 that names the feature."""
        if self.allow_nan:
            return math.nan
        raise InvalidInput(f"{field}: a missing value for {self.features[position].name}, and this model does not "
                           f"take missing values; send a value", field=field, code="missing_value")


def number_from_text(field: str, text: str) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise InvalidInput(f"{field}: expected a number, got {text!r}", field=field, code="not_a_number")
    return check_number(field, float(text))  # "1e999" reads as inf: refused there, as in a body


def _fill_named(index: FeatureIndex, items: Mapping[str, Any], where: str, from_text: bool = False) -> list[Any]:
    """One row from {name-or-alias: value}; every feature exactly once, nothing else."""
    row: list[float | None] = [None] * len(index)
    given_as: list[str] = [""] * len(index)
    for key, value in items.items():
        position = index.position.get(key)
        field = f"{where}{key}"
        if position is None:
            raise InvalidInput(f"{field}: unknown field; expected {index.expected}", field=field, code="unknown_field")
        if row[position] is not None:
            raise InvalidInput(
                f"{field}: {index.features[position].name} is already given as {given_as[position]!r}",
                field=field,
                code="duplicate_field",
            )
        row[position] = index.value(position, field, value, from_text)
        given_as[position] = key
    for position, value in enumerate(row):
        if value is None:
            feature = index.features[position]
            raise InvalidInput(
                f"{where}{feature.alias}: missing; expected {index.expected}",
                field=f"{where}{feature.alias}",
                code="missing_field",
            )
    return row  # type: ignore[return-value]


def _undecoded(query_string: str) -> bool:
    """Whether a query string reads as it is: ASCII, no percent-escape, no `+` for a space."""
    return query_string.isascii() and "%" not in query_string and "+" not in query_string


def plain_query(query_string: str) -> dict[str, list[str]] | None:
    """`a=1&b=2` as {"a": ["1"], "b": ["2"]}, read without werkzeug's MultiDict (the hot path of GET /); None for
    anything that needs decoding or is not one `name=value` per part (percent-escapes, `+`, a part without `=`,
    an empty part, bytes outside ASCII): the caller then reads werkzeug's own parse, so both agree."""
    if not query_string:
        return {}
    if not _undecoded(query_string):
        return None
    params: dict[str, list[str]] = {}
    for part in query_string.split("&"):
        name, equals, value = part.partition("=")
        if not equals or not name:
            return None
        if name in params:
            params[name].append(value)
        else:
            params[name] = [value]
    return params


def parse_query(index: FeatureIndex, params: Mapping[str, list[str]]) -> tuple[float, ...]:
    """One row from query parameters such as {"length": ["5.8"], "width": ["3.4"]}."""
    single: dict[str, str] = {}
    for key, values in params.items():
        if len(values) != 1:
            raise InvalidInput(f"{key}: given {len(values)} times; give it once", field=key, code="duplicate_field")
        single[key] = values[0]
    return tuple(_fill_named(index, single, "", from_text=True))


def _reject_constant(name: str) -> float:
    raise InvalidInput(f"body: {name} is not a finite number (and not JSON)", field="body", code="not_finite")


# json.loads makes a decoder per call when given parse_constant: made once here. It takes text; a body's bytes are
# decoded as json.loads decodes them (UTF-8, -16 or -32, told by the first bytes).
_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass") if isinstance(body, bytes) else body
        if text.startswith("\ufeff"):  # as json.loads: a byte-order mark is an error
            raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
        return _DECODE(text)
    except InvalidInput:
        raise
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body: malformed JSON ({exc})", field="body", code="malformed_json") from None


def _plain_rows(instances: list[Any], width: int, allow_nan: bool = False) -> np.ndarray | None:
    """The common case at C speed: every instance a list of `width` values (map() and set() run in C);
    their numbers are checked by the one number parser, which names the element at fault. A missing value (null)
    in a model that takes one goes the named way, where it becomes NaN."""
    if set(map(type, instances)) != {list} or set(map(len, instances)) != {width}:
        return None
    flat = list(chain.from_iterable(instances))
    if allow_nan and None in flat:
        return None
    rows = array_from_json(flat, None, lambda i: f"instances[{i // width}][{i % width}]")
    return rows.reshape(len(instances), width)


def parse_instances(index: FeatureIndex, document: Any, max_rows: int) -> np.ndarray:
    """Rows from a decoded `{"instances": [[5.8, 3.4], {"length": 6.1, "width": 2.8}, ...]}`."""
    if not isinstance(document, dict):
        raise InvalidInput(
            f'body: expected a JSON object {{"instances": [...]}}, got {type(document).__name__}',
            field="body",
            code="invalid_body",
        )
    extra = sorted(set(document) - {"instances"})
    if extra:
        raise InvalidInput(f"{extra[0]}: unknown field; the body holds \"instances\" (and, if you want more than the "
                           f"class, \"outputs\": [\"probabilities\"])", field=extra[0], code="unknown_field")
    if "instances" not in document:
        raise InvalidInput('instances: missing; send {"instances": [[length, width], ...]}', field="instances", code="missing_field")
    instances = document["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f"instances: expected a list, got {type(instances).__name__}", field="instances", code="invalid_body")
    if not instances:
        raise InvalidInput("instances: empty; send at least one instance", field="instances", code="empty_batch")
    if len(instances) > max_rows:
        raise PayloadTooLarge(
            f"instances: {len(instances)} instances, more than the limit of {max_rows} (MAX_BATCH_ROWS)",
            field="instances",
            code="batch_too_large",
        )
    rows = None if index.has_strings else _plain_rows(instances, len(index), index.allow_nan)
    if rows is not None:
        return rows
    # Something is off, given by name, or typed: walk the rows to name what, where.
    rows = np.empty((len(instances), len(index)), dtype=index.dtype)
    for number, instance in enumerate(instances):
        where = f"instances[{number}]"
        if isinstance(instance, list):
            if len(instance) != len(index):
                raise InvalidInput(
                    f"{where}: expected {len(index)} values ({', '.join(f.name for f in index.features)}), got {len(instance)}",
                    field=where,
                    code="wrong_length",
                )
            rows[number] = [index.value(i, f"{where}[{i}]", value) for i, value in enumerate(instance)]
        elif isinstance(instance, dict):
            rows[number] = _fill_named(index, instance, f"{where}.")
        else:
            raise InvalidInput(
                f"{where}: expected a list of {len(index)} numbers or an object of named features, got {type(instance).__name__}",
                field=where,
                code="invalid_instance",
            )
    return rows
