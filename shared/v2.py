"""The Open Inference Protocol ("V2", KServe / Triton / MLServer) for one model version.

Plain values in, plain values out: the web layer (`shared.function`) hands over
path arguments, the body and two headers, and sends back what these return.

Model name is the version's name (`svc`); its one version is the first 12 hex
digits of the artifact's SHA-256, so a version names exactly one artifact.

Inputs, either form:
  * one tensor `features`, shape [N, 2], columns in the order of the metadata;
  * one tensor per feature, named by full name or alias (`sepal_length` or
    `length`), each of shape [N] or [N, 1].
Datatypes FP16, FP32, FP64 and the integer types; data nested or flat, row-major.
The binary tensor data extension is supported in both directions.

Outputs: `predicted_class` (INT64, [N], index into the class names) by default;
`class_name` (BYTES, [N]) and `decision_scores` (FP64, [N, classes]) on request
through the request's `outputs` list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from shared.config import Settings
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.inputs import parse_json
from shared.model import ServedModel

PROTOCOL_VERSION = "2"
SERVER_NAME = "iris-versions"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "Inference-Header-Content-Length"
FEATURES_INPUT = "features"

# Little-endian, as the binary extension specifies.
FLOAT_TYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
INTEGER_TYPES = {"INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
                 "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}
NUMERIC_TYPES = {**FLOAT_TYPES, **INTEGER_TYPES}
SUPPORTED = ", ".join(NUMERIC_TYPES)

OUTPUT_PREDICTED_CLASS = "predicted_class"
OUTPUT_CLASS_NAME = "class_name"
OUTPUT_DECISION_SCORES = "decision_scores"
DEFAULT_OUTPUTS = (OUTPUT_PREDICTED_CLASS,)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class Reply:
    """What the web layer sends: a JSON document and, with binary outputs, raw bytes after it."""

    document: dict[str, Any]
    binary: bytes = b""


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


def _tensor_from_json(values: list[Any], datatype: str, field: str) -> np.ndarray:
    integer = datatype in INTEGER_TYPES
    # type(), not isinstance(): bool is an int subclass. A set of types checks in C; the loop
    # below runs only to name the element that is wrong.
    if not set(map(type, values)) <= ({int} if integer else {int, float}):
        _name_the_wrong_element(values, datatype, field, integer)
    if integer:
        _check_integer_range(values, datatype, field)
    try:
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.dtype(NUMERIC_TYPES[datatype]))  # beyond FP16/FP32: inf, caught later
    except OverflowError:  # an integer beyond float64
        index = next(i for i, value in enumerate(values) if isinstance(value, int) and abs(value) > 2**1024)
        digits = len(str(abs(values[index])))
        raise _bad(f"{field}[{index}]: an integer of {digits} digits is beyond the range of {datatype}", field,
                   "not_finite") from None


def _name_the_wrong_element(values: list[Any], datatype: str, field: str, integer: bool) -> None:
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise _bad(f"{field}[{index}]: expected {kind} for {datatype}, got {json.dumps(value)}", field, "not_a_number")
    raise _bad(f"{field}: expected numbers for {datatype}", field, "not_a_number")


def _check_integer_range(values: list[int], datatype: str, field: str) -> None:
    limits = np.iinfo(np.dtype(NUMERIC_TYPES[datatype]))
    if values and limits.min <= min(values) and max(values) <= limits.max:
        return
    for index, value in enumerate(values):
        if not limits.min <= value <= limits.max:
            raise _bad(f"{field}[{index}]: {value} is out of range for {datatype}", field, "out_of_range")


def _tensor_from_bytes(raw: bytes, datatype: str, field: str) -> np.ndarray:
    dtype = np.dtype(NUMERIC_TYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise _bad(f"{field}: {len(raw)} bytes is not a whole number of {datatype} elements", field)
    return np.frombuffer(raw, dtype=dtype)


class OpenInference:
    def __init__(self, model: ServedModel, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self.version = model.manifest.sha256[:12]
        self.n_classes = len(model.manifest.class_names)

    # ------------------------------------------------------------ health and metadata

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    def live(self) -> dict[str, Any]:
        return {"live": True}

    def ready(self) -> dict[str, Any]:
        return {"ready": True}

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.model.name:
            raise NotFound(f"model {name!r} is not served here; this server serves {self.model.name!r}",
                           field="model_name", code="model_not_found")
        if version is not None and version != self.version:
            raise NotFound(f"model {name!r} has no version {version!r}; its version is {self.version!r}",
                           field="model_version", code="version_not_found")

    def model_ready(self, name: str, version: str | None = None) -> dict[str, Any]:
        self._check_model(name, version)
        return {"name": name, "ready": True}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        self._check_model(name, version)
        return {
            "name": self.model.name,
            "versions": [self.version],
            "platform": "scikit-learn",
            "inputs": [{"name": FEATURES_INPUT, "datatype": "FP64", "shape": [-1, len(self.model.features)]}],
            "outputs": [
                {"name": OUTPUT_PREDICTED_CLASS, "datatype": "INT64", "shape": [-1]},
                {"name": OUTPUT_CLASS_NAME, "datatype": "BYTES", "shape": [-1]},
                {"name": OUTPUT_DECISION_SCORES, "datatype": "FP64", "shape": [-1, self.n_classes]},
            ],
        }

    # ------------------------------------------------------------ inference

    def infer(self, name: str, version: str | None, body: bytes, header_length: str | None) -> Reply:
        """An inference request. Its Content-Type is not read: the protocol defines the body
        (JSON, then binary tensor data when Inference-Header-Content-Length is given), and
        clients differ in what they send (curl -d: form-urlencoded; tritonclient: none)."""
        self._check_model(name, version)
        document, buffer = self._split_body(body, header_length)
        if not isinstance(document, dict):
            raise _bad(f"body: expected a JSON object, got {type(document).__name__}", "body", "invalid_body")
        unknown = sorted(set(document) - {"id", "parameters", "inputs", "outputs"})
        if unknown:
            raise _bad(f"{unknown[0]}: not a field of an inference request", unknown[0], "unknown_field")
        request_id = document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise _bad("id: expected a string", "id", "invalid_body")
        parameters = self._parameters(document.get("parameters"), "parameters")
        rows = self._rows(document.get("inputs"), buffer)
        outputs = self._requested_outputs(document.get("outputs"), bool(parameters.get("binary_data_output", False)))
        return self._reply(rows, outputs, request_id)

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
        tensors: list[tuple[str, list[int], np.ndarray]] = []
        for number, tensor in enumerate(inputs):
            name, shape, values, used = self._input(tensor, number, buffer, offset)
            offset += used
            tensors.append((name, shape, values))
        if offset != len(buffer):
            raise _bad(f"body: {len(buffer) - offset} bytes of binary data that no input claims", "body", "invalid_tensor")
        features = self.model.features
        if len(tensors) == 1 and tensors[0][0] == FEATURES_INPUT:
            _, shape, values = tensors[0]
            if len(shape) != 2 or shape[1] != len(features):
                raise _bad(f"{FEATURES_INPUT}: shape {shape}, expected [N, {len(features)}]", "inputs[0].shape",
                           "wrong_shape")
            rows = values.reshape(shape)
        else:
            rows = self._columns(tensors)
        if rows.shape[0] == 0:
            raise _bad("inputs: no rows; send at least one", "inputs", "empty_batch")
        if rows.shape[0] > self.settings.max_batch_rows:
            raise PayloadTooLarge(f"inputs: {rows.shape[0]} rows, more than the limit of "
                                  f"{self.settings.max_batch_rows} (MAX_BATCH_ROWS)", field="inputs",
                                  code="batch_too_large")
        rows = rows.astype(np.float64)
        if not np.isfinite(rows).all():
            raise _bad("inputs: NaN or infinity in the data; every value must be a finite number", "inputs",
                       "not_finite")
        return np.ascontiguousarray(rows)

    def _input(self, tensor: Any, number: int, buffer: bytes, offset: int) -> tuple[str, list[int], np.ndarray, int]:
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
        if not isinstance(datatype, str) or datatype not in NUMERIC_TYPES:
            raise _bad(f"{where}.datatype: {json.dumps(datatype)} is not supported; use one of {SUPPORTED}",
                       f"{where}.datatype", "unsupported_datatype")
        size = math.prod(shape)
        if size > self.settings.max_batch_rows * len(self.model.features):
            raise PayloadTooLarge(f"{where}.shape: {shape} holds more than the limit of "
                                  f"{self.settings.max_batch_rows} rows (MAX_BATCH_ROWS)",
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
        elif "data" in tensor:
            values = _tensor_from_json(_flatten(tensor["data"], f"{where}.data"), datatype, f"{where}.data")
        else:
            raise _bad(f"{where}.data: missing", f"{where}.data", "missing_field")
        if values.size != size:
            raise _bad(f"{where}: shape {shape} needs {size} elements, data has {values.size}", f"{where}.shape",
                       "wrong_shape")
        return name, shape, values, used

    def _columns(self, tensors: list[tuple[str, list[int], np.ndarray]]) -> np.ndarray:
        features = self.model.features
        columns: list[np.ndarray | None] = [None] * len(features)
        rows_in: int | None = None
        for number, (name, shape, values) in enumerate(tensors):
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
            columns[position] = values
        for position, column in enumerate(columns):
            if column is None:
                feature = features.features[position]
                raise _bad(f"inputs: no input for {feature.name} (or {feature.alias})", "inputs", "missing_input")
        return np.column_stack(columns)

    def _requested_outputs(self, outputs: Any, binary_default: bool) -> list[RequestedOutput]:
        if outputs is None:
            return [RequestedOutput(name, binary_default) for name in DEFAULT_OUTPUTS]
        if not isinstance(outputs, list) or not outputs:
            raise _bad("outputs: expected a non-empty list of requested outputs", "outputs", "invalid_body")
        known = (OUTPUT_PREDICTED_CLASS, OUTPUT_CLASS_NAME, OUTPUT_DECISION_SCORES)
        requested: list[RequestedOutput] = []
        for number, output in enumerate(outputs):
            where = f"outputs[{number}]"
            if not isinstance(output, dict) or not isinstance(output.get("name"), str):
                raise _bad(f"{where}: expected {{\"name\": ...}}", where, "invalid_body")
            name = output["name"]
            if name not in known:
                raise _bad(f"{where}.name: unknown output {name!r}; this model has {', '.join(known)}",
                           f"{where}.name", "unknown_output")
            if any(r.name == name for r in requested):
                raise _bad(f"{where}.name: {name!r} requested twice", f"{where}.name", "duplicate_output")
            parameters = self._parameters(output.get("parameters"), f"{where}.parameters")
            if parameters.get("class_count"):
                raise _bad(f"{where}.parameters.class_count: the classification extension is not supported; "
                           f"request {OUTPUT_DECISION_SCORES} instead", f"{where}.parameters.class_count",
                           "unsupported_parameter")
            requested.append(RequestedOutput(name, bool(parameters.get("binary_data", binary_default))))
        return requested

    def _reply(self, rows: np.ndarray, outputs: list[RequestedOutput], request_id: str | None) -> Reply:
        indices = self.model.predict_indices(rows)
        documents, binary = [], bytearray()
        for output in outputs:
            if output.name == OUTPUT_PREDICTED_CLASS:
                tensor, datatype = indices.astype("<i8"), "INT64"
            elif output.name == OUTPUT_CLASS_NAME:
                tensor, datatype = self.model.class_names_of(indices), "BYTES"
            else:
                tensor, datatype = self.model.decision_scores(rows).astype("<f8"), "FP64"
            entry: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": list(tensor.shape)}
            if output.binary:
                raw = _bytes_of(tensor, datatype)
                entry["parameters"] = {"binary_data_size": len(raw)}
                binary += raw
            else:
                entry["data"] = tensor.ravel().tolist()
            documents.append(entry)
        document: dict[str, Any] = {"model_name": self.model.name, "model_version": self.version}
        if request_id is not None:
            document["id"] = request_id
        document["outputs"] = documents
        return Reply(document, bytes(binary))


def _bytes_of(tensor: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return tensor.tobytes()
    # BYTES elements: a 4-byte little-endian length, then the bytes.
    parts = []
    for element in tensor.ravel().tolist():
        encoded = str(element).encode()
        parts.append(len(encoded).to_bytes(4, "little") + encoded)
    return b"".join(parts)
