"""V2 inference requests: bytes and headers in, a validated `InferRequest` out.

Inputs, either form:
  * one tensor `features`, shape [N, F], columns in the order of the metadata;
  * one tensor per feature, named by full name or alias (`sepal_length` or
    `length`), each of shape [N] or [N, 1].
Datatypes FP16, FP32, FP64 and the integer types; data nested or flat, row-major,
or raw little-endian bytes after the JSON header (the binary tensor data extension).
A string feature (an imported Pipeline's) comes as its own BYTES tensor: JSON strings, or in binary each element
a 4-byte little-endian length and its UTF-8 bytes; each value checked as the tutorial's batch checks it.
Numbers are checked by `shared.numbers`, the same parser the tutorial's batch uses.
Nothing here computes an answer: `shared.v2` does that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from shared.artifact import STRING
from shared.errors import InvalidInput, PayloadTooLarge
from shared.inputs import FeatureIndex, parse_json
from shared.numbers import FLOAT_TYPES, NUMERIC_TYPES, array_from_json, check_boolean

HEADER_LENGTH = "Inference-Header-Content-Length"
FEATURES_INPUT = "features"
SUPPORTED = ", ".join(NUMERIC_TYPES)
REQUEST_FIELDS = {"id", "parameters", "inputs", "outputs"}


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    rows: np.ndarray  # [N, features]: float64, finite; objects (floats and strs) for a model with string features
    outputs: list[RequestedOutput]
    id: str | None = None


def _bad(message: str, field: str, code: str = "invalid_tensor") -> InvalidInput:
    return InvalidInput(message, field=field, code=code)


def _flatten(data: Any, field: str) -> list[Any]:
    """Row-major elements of nested or flat JSON lists."""
    if not isinstance(data, list):
        raise _bad(f"{field}: expected a list of numbers, got {type(data).__name__}", field)
    kinds = set(map(type, data))
    if list not in kinds:
        return data
    if kinds == {list}:  # the common nesting, a list of rows: flattened in C
        joined = list(chain.from_iterable(data))
        if list not in set(map(type, joined)):
            return joined
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _strings_from_bytes(raw: bytes, field: str) -> np.ndarray:
    """BYTES elements in binary: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"{field}: BYTES data ends inside an element's length", field)
        size = int.from_bytes(raw[offset:offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise _bad(f"{field}: a BYTES element of {size} bytes runs past the data", field)
        try:
            values.append(raw[offset:offset + size].decode())
        except UnicodeDecodeError:
            raise _bad(f"{field}: a BYTES element is not UTF-8", field) from None
        offset += size
    return np.array(values, dtype=object)


def _tensor_from_bytes(raw: bytes, datatype: str, field: str) -> np.ndarray:
    if datatype == "BYTES":
        return _strings_from_bytes(raw, field)
    dtype = np.dtype(NUMERIC_TYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise _bad(f"{field}: {len(raw)} bytes is not a whole number of {datatype} elements", field)
    return np.frombuffer(raw, dtype=dtype)


class InferRequestParser:
    """Validates inference requests for one model's features, row limit and outputs."""

    def __init__(self, features: FeatureIndex, max_rows: int, known_outputs: Sequence[str],
                 default_outputs: Sequence[str], missing_outputs: Mapping[str, str] | None = None) -> None:
        self.features = features
        self.max_rows = max_rows
        self.known_outputs = tuple(known_outputs)
        self.default_outputs = tuple(default_outputs)
        self.missing_outputs = dict(missing_outputs or {})  # an output other models have: why this one has not

    def parse(self, body: bytes, header_length: str | None) -> InferRequest:
        """An inference request. Its Content-Type is not read: the protocol defines the body
        (JSON, then binary tensor data when Inference-Header-Content-Length is given), and
        clients differ in what they send (curl -d: form-urlencoded; tritonclient: none)."""
        document, buffer = self._split_body(body, header_length)
        if not isinstance(document, dict):
            raise _bad(f"body: expected a JSON object, got {type(document).__name__}", "body", "invalid_body")
        unknown = sorted(set(document) - REQUEST_FIELDS)
        if unknown:
            raise _bad(f"{unknown[0]}: not a field of an inference request", unknown[0], "unknown_field")
        request_id = document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise _bad("id: expected a string", "id", "invalid_body")
        parameters = self._parameters(document.get("parameters"), "parameters")
        binary_default = check_boolean("parameters.binary_data_output", parameters.get("binary_data_output", False))
        rows = self._rows(document.get("inputs"), buffer)
        return InferRequest(rows, self._requested_outputs(document.get("outputs"), binary_default), request_id)

    def _split_body(self, body: bytes, header_length: str | None) -> tuple[Any, bytes]:
        if not body:
            raise _bad("body: empty; send an inference request", "body", "empty_body")
        if header_length is None:
            return parse_json(body), b""
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad(f"{HEADER_LENGTH}: {header_length!r} is not a length within the {len(body)}-byte body",
                       HEADER_LENGTH, "invalid_header")
        split = int(header_length)
        return parse_json(body[:split]), body[split:]

    @staticmethod
    def _parameters(value: Any, field: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _bad(f"{field}: expected an object", field, "invalid_body")
        return value

    def _rows(self, inputs: Any, buffer: bytes) -> np.ndarray:
        if not isinstance(inputs, list) or not inputs:
            raise _bad("inputs: expected a non-empty list of tensors", "inputs", "missing_field")
        offset = 0
        tensors: list[tuple[str, list[int], np.ndarray, str]] = []
        for number, tensor in enumerate(inputs):
            name, shape, values, datatype, used = self._input(tensor, number, buffer, offset)
            offset += used
            tensors.append((name, shape, values, datatype))
        if offset != len(buffer):
            raise _bad(f"body: {len(buffer) - offset} bytes of binary data that no input claims", "body", "invalid_tensor")
        features = self.features
        if any(name == FEATURES_INPUT for name, *_ in tensors) and features.has_strings:
            raise _bad(f"inputs: {FEATURES_INPUT!r} holds numbers only, and this model has string features: send "
                       f"one input per feature ({features.expected})", "inputs", "unknown_input")
        if len(tensors) == 1 and tensors[0][0] == FEATURES_INPUT and not features.has_strings:
            _, shape, values, _ = tensors[0]
            if len(shape) != 2 or shape[1] != len(features):
                raise _bad(f"{FEATURES_INPUT}: shape {shape}, expected [N, {len(features)}]", "inputs[0].shape",
                           "wrong_shape")
            rows = values.reshape(shape)
        else:
            rows = self._columns(tensors)
        if rows.shape[0] == 0:
            raise _bad("inputs: no rows; send at least one", "inputs", "empty_batch")
        if rows.shape[0] > self.max_rows:
            raise PayloadTooLarge(f"inputs: {rows.shape[0]} rows, more than the limit of "
                                  f"{self.max_rows} (MAX_BATCH_ROWS)", field="inputs",
                                  code="batch_too_large")
        if features.has_strings:
            return rows  # every value checked as its column was read
        rows = rows.astype(np.float64)
        self._check_finite(rows, "inputs")
        return np.ascontiguousarray(rows)

    def _check_finite(self, values: np.ndarray, where: str) -> None:
        """Every value finite; NaN also passes (a missing value) for a model that takes one, infinity never."""
        if self.features.allow_nan:
            if np.isinf(values).any():
                raise _bad(f"{where}: infinity in the data; every value must be a number or NaN (missing)", where,
                           "not_finite")
        elif not np.isfinite(values).all():
            raise _bad(f"{where}: NaN or infinity in the data; every value must be a finite number (this model "
                       f"does not take missing values)", where, "not_finite")

    def _input(self, tensor: Any, number: int, buffer: bytes,
               offset: int) -> tuple[str, list[int], np.ndarray, str, int]:
        where = f"inputs[{number}]"
        if not isinstance(tensor, dict):
            raise _bad(f"{where}: expected a tensor object", where, "invalid_body")
        unknown = sorted(set(tensor) - {"name", "shape", "datatype", "parameters", "data"})
        if unknown:
            raise _bad(f"{where}.{unknown[0]}: not a field of an input tensor", f"{where}.{unknown[0]}", "unknown_field")
        for key in ("name", "shape", "datatype"):
            if key not in tensor:
                raise _bad(f"{where}.{key}: missing", f"{where}.{key}", "missing_field")
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        if not isinstance(name, str):
            raise _bad(f"{where}.name: expected a string", f"{where}.name", "invalid_body")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise _bad(f"{where}.shape: expected a list of non-negative integers, got {json.dumps(shape)}",
                       f"{where}.shape", "wrong_shape")
        strings = self.features.has_strings and datatype == "BYTES"
        if not strings and (not isinstance(datatype, str) or datatype not in NUMERIC_TYPES):
            also = ", or BYTES for a string feature" if self.features.has_strings else ""
            raise _bad(f"{where}.datatype: {json.dumps(datatype)} is not supported; use one of {SUPPORTED}{also}",
                       f"{where}.datatype", "unsupported_datatype")
        size = math.prod(shape)
        if size > self.max_rows * len(self.features):
            raise PayloadTooLarge(f"{where}.shape: {shape} holds more than the limit of "
                                  f"{self.max_rows} rows (MAX_BATCH_ROWS)",
                                  field=f"{where}.shape", code="batch_too_large")
        parameters = self._parameters(tensor.get("parameters"), f"{where}.parameters")
        binary_size = parameters.get("binary_data_size")
        used = 0
        if binary_size is not None:
            if "data" in tensor:
                raise _bad(f"{where}: both data and binary_data_size given", where)
            if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0 \
                    or offset + binary_size > len(buffer):
                raise _bad(f"{where}.parameters.binary_data_size: {binary_size!r} does not fit the "
                           f"{len(buffer) - offset} bytes of binary data left", f"{where}.parameters.binary_data_size")
            values = _tensor_from_bytes(buffer[offset:offset + binary_size], datatype, where)
            used = binary_size
        elif "data" in tensor and strings:
            values = np.array(_flatten(tensor["data"], f"{where}.data"), dtype=object)
        elif "data" in tensor:
            data_field = f"{where}.data"
            flat = _flatten(tensor["data"], data_field)
            missing = [i for i, value in enumerate(flat) if value is None]
            if missing and not self.features.allow_nan:
                raise _bad(f"{data_field}[{missing[0]}]: a missing value (null), and this model does not take "
                           f"missing values; send a value", data_field, "missing_value")
            if missing and datatype not in FLOAT_TYPES:
                raise _bad(f"{data_field}[{missing[0]}]: a missing value (null) needs a float tensor (FP64)",
                           data_field, "missing_value")
            for i in missing:
                flat[i] = 0.0  # checked as a number, then made NaN: the model takes missing values
            values = array_from_json(flat, datatype, lambda i: f"{data_field}[{i}]", data_field)
            if missing:
                values[missing] = np.nan
        else:
            raise _bad(f"{where}.data: missing", f"{where}.data", "missing_field")
        if values.size != size:
            raise _bad(f"{where}: shape {shape} needs {size} elements, data has {values.size}", f"{where}.shape",
                       "wrong_shape")
        return name, shape, values, datatype, used

    def _columns(self, tensors: list[tuple[str, list[int], np.ndarray, str]]) -> np.ndarray:
        features = self.features
        columns: list[np.ndarray | None] = [None] * len(features)
        rows_in: int | None = None
        for number, (name, shape, values, datatype) in enumerate(tensors):
            where = f"inputs[{number}]"
            position = features.position.get(name)
            if position is None:
                raise _bad(f"{where}.name: unknown input {name!r}; send {FEATURES_INPUT!r} of shape [N, "
                           f"{len(features)}], or one input per feature: {features.expected}",
                           f"{where}.name", "unknown_input")
            if columns[position] is not None:
                raise _bad(f"{where}.name: {features.features[position].name} is given twice", f"{where}.name",
                           "duplicate_input")
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise _bad(f"{where}.shape: {shape}, expected [N] or [N, 1] for one feature", f"{where}.shape",
                           "wrong_shape")
            if rows_in is not None and shape[0] != rows_in:
                raise _bad(f"{where}.shape: {shape[0]} rows, the inputs before it have {rows_in}", f"{where}.shape",
                           "wrong_shape")
            rows_in = shape[0]
            if features.has_strings:
                values = self._typed(position, values, datatype, where)
            columns[position] = values
        for position, column in enumerate(columns):
            if column is None:
                feature = features.features[position]
                raise _bad(f"inputs: no input for {feature.name} (or {feature.alias})", "inputs", "missing_input")
        if features.has_strings:
            rows = np.empty((len(columns[0]), len(columns)), dtype=object)
            for position, column in enumerate(columns):
                rows[:, position] = column
            return rows
        return np.column_stack(columns)

    def _typed(self, position: int, values: np.ndarray, datatype: str, where: str) -> np.ndarray:
        """One column of a model with string features: strs for a string feature (a BYTES tensor), finite floats
        for a number; every element checked by the one value checker, which names the element at fault."""
        feature = self.features.features[position]
        if (datatype == "BYTES") != (feature.type == STRING):
            wanted = "a BYTES tensor" if feature.type == STRING else "a number tensor (FP64, INT64, ...)"
            raise _bad(f"{where}.datatype: {feature.name} is a {feature.type}: send {wanted}", f"{where}.datatype",
                       "unsupported_datatype")
        if datatype != "BYTES":
            values = values.astype(np.float64)
            self._check_finite(values, where)
            return values
        return np.array([self.features.value(position, f"{where}.data[{i}]", value)
                         for i, value in enumerate(values.ravel().tolist())], dtype=object)

    def _requested_outputs(self, outputs: Any, binary_default: bool) -> list[RequestedOutput]:
        if outputs is None:
            return [RequestedOutput(name, binary_default) for name in self.default_outputs]
        if not isinstance(outputs, list) or not outputs:
            raise _bad("outputs: expected a non-empty list of requested outputs", "outputs", "invalid_body")
        known = self.known_outputs
        requested: list[RequestedOutput] = []
        for number, output in enumerate(outputs):
            where = f"outputs[{number}]"
            if not isinstance(output, dict) or not isinstance(output.get("name"), str):
                raise _bad(f"{where}: expected {{\"name\": ...}}", where, "invalid_body")
            name = output["name"]
            if name in self.missing_outputs:
                raise _bad(f"{where}.name: {self.missing_outputs[name]}", f"{where}.name", "no_probabilities")
            if name not in known:
                raise _bad(f"{where}.name: unknown output {name!r}; this model has {', '.join(known)}",
                           f"{where}.name", "unknown_output")
            if any(r.name == name for r in requested):
                raise _bad(f"{where}.name: {name!r} requested twice", f"{where}.name", "duplicate_output")
            parameters = self._parameters(output.get("parameters"), f"{where}.parameters")
            if parameters.get("class_count"):
                raise _bad(f"{where}.parameters.class_count: the classification extension is not supported; "
                           f"request decision_scores instead", f"{where}.parameters.class_count",
                           "unsupported_parameter")
            binary = parameters.get("binary_data", binary_default)
            requested.append(RequestedOutput(name, check_boolean(f"{where}.parameters.binary_data", binary)))
        return requested

