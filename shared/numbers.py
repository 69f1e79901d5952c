"""JSON numbers to numpy arrays: the one place that decides what a number is and whether it fits.

Both protocols use it: the tutorial's batch (`shared.inputs`) and V2 tensors
(`shared.v2_request`). A JSON number here is an `int` or a `float` and never a
`bool` (true/false are not measurements, though Python counts bool as int).
Each value must fit the declared datatype: finite and within range for the float
types (FP16 up to 65504, FP32 up to about 3.4e38, FP64 up to about 1.8e308), within
the type's range for the integer types. The fast path checks a whole list in C;
only when something is wrong does a loop run, to name the first element at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.errors import InvalidInput

# Little-endian, as the V2 binary extension specifies.
FLOAT_TYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
INTEGER_TYPES = {"INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
                 "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}
NUMERIC_TYPES = {**FLOAT_TYPES, **INTEGER_TYPES}
FLOAT_LIMITS = {name: float(np.finfo(np.dtype(code)).max) for name, code in FLOAT_TYPES.items()}

Namer = Callable[[int], str]


def not_a_number(field: str, value: Any, datatype: str | None = None, where: str | None = None) -> InvalidInput:
    """`datatype` None: a plain JSON number (the tutorial's batch); else a V2 tensor's declared type."""
    where = where or field
    if datatype is None:
        message = f"{where}: expected a number, got {type(value).__name__} {json.dumps(value)}"
    else:
        kind = "an integer" if datatype in INTEGER_TYPES else "a number"
        message = f"{where}: expected {kind} for {datatype}, got {json.dumps(value)}"
    return InvalidInput(message, field=field, code="not_a_number")


def _digits(value: int) -> int:
    return len(str(abs(value))) if abs(value) < 10**4000 else int(abs(value).bit_length() * math.log10(2)) + 1


def check_number(field: str, value: Any, datatype: str | None = None, where: str | None = None) -> float | int:
    """One JSON value as a number of `datatype` (None: any finite float64), or an InvalidInput for `field`
    whose message names `where` (the element; default: the field itself)."""
    where = where or field
    if datatype in INTEGER_TYPES:
        if type(value) is not int:
            raise not_a_number(field, value, datatype, where)
        limits = np.iinfo(np.dtype(INTEGER_TYPES[datatype]))
        if not limits.min <= value <= limits.max:
            shown = value if _digits(value) <= 30 else f"an integer of {_digits(value)} digits"
            raise InvalidInput(f"{where}: {shown} is out of range for {datatype} ({limits.min} to {limits.max})",
                               field=field, code="out_of_range")
        return value
    if type(value) not in (int, float):
        raise not_a_number(field, value, datatype, where)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64
        raise InvalidInput(f"{where}: an integer of {_digits(value)} digits is beyond the range of {datatype or 'a float'}",
                           field=field, code="not_finite") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{where}: must be a finite number, got {value!r}", field=field, code="not_finite")
    limit = FLOAT_LIMITS[datatype or "FP64"]
    if abs(number) > limit:
        raise InvalidInput(f"{where}: {value!r} is out of range for {datatype or 'FP64'} (largest magnitude {limit:g})",
                           field=field, code="out_of_range")
    return number


def array_from_json(values: Sequence[Any], datatype: str | None, name: Namer, field: str | None = None) -> np.ndarray:
    """A flat list of JSON values as an array of `datatype` (None: plain JSON numbers, float64).
    An error names element i as `name(i)`; its field is `field`, or that element where `field` is None."""
    dtype = np.dtype(NUMERIC_TYPES[datatype or "FP64"])
    integer = datatype in INTEGER_TYPES
    # type(), not isinstance(): bool is an int subclass. A set of types is built in C.
    if set(map(type, values)) <= ({int} if integer else {int, float}):
        array = _fast(values, datatype, dtype, integer)
        if array is not None:
            return array
    for index, value in enumerate(values):
        element = name(index)
        check_number(field or element, value, datatype, element)
    raise AssertionError("array_from_json: a value failed the fast path but passed every check")  # pragma: no cover


SHORT = 16  # values checked one by one in Python below this many


def _fast(values: Sequence[Any], datatype: str, dtype: np.dtype, integer: bool) -> np.ndarray | None:
    """The array when every value fits; None to let the slow path name the one that does not."""
    if integer:
        limits = np.iinfo(dtype)
        if values and not (limits.min <= min(values) and max(values) <= limits.max):
            return None
        return np.asarray(values, dtype=dtype)
    limit = FLOAT_LIMITS[datatype or "FP64"]
    if len(values) <= SHORT:  # a request's few values: compared in Python, cheaper than numpy's calls
        for value in values:
            if not -limit <= value <= limit:  # also False for NaN, and for an integer beyond the range
                return None
        array = np.array(values, dtype=np.float64)  # float64 first, as below: the same rounding to a narrower type
        return array if dtype == np.float64 else array.astype(dtype)
    try:
        array = np.fromiter(values, dtype=np.float64, count=len(values))
    except OverflowError:  # an integer beyond float64
        return None
    if not (np.abs(array) <= limit).all():  # also False for NaN and inf
        return None
    return array if dtype == np.float64 else array.astype(dtype)


def check_boolean(field: str, value: Any) -> bool:
    """A parameter the protocol defines as a boolean: true or false, nothing else (as Triton answers)."""
    if type(value) is not bool:
        raise InvalidInput(f"{field}: expected true or false, got {json.dumps(value)}", field=field,
                           code="not_a_boolean")
    return value
