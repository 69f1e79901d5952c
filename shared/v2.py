"""The Open Inference Protocol ("V2", KServe / Triton / MLServer) for one model version: its answers.

Plain values in, plain values out: the web layer (`shared.function`) hands over
path arguments, the body and two headers, and sends back what these return.
Requests are parsed and validated by `shared.v2_request`.

Model name is the version's name (`svc`); its one version is the first 12 hex
digits of the artifact's SHA-256, so a version names exactly one artifact.

Outputs come from one table per kind of model (name, datatype, shape, how it is computed),
which drives the model metadata, the names a request may ask for and the response. A classifier:
`predicted_class` (INT64, [N], index into the class names) by default;
`class_name` (BYTES, [N]) and `decision_scores` (FP64, [N, classes]; when the estimator has a
decision_function) on request. A regressor: `prediction` (FP64, [N]).

Inputs in the metadata: `features` (FP64, [-1, F]) for a model of numbers the catalogue trained; one input per
feature (FP64, or BYTES for a string) for an imported model, which is how a request sends them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.artifact import STRING, class_key
from shared.config import Settings
from shared.errors import NotFound
from shared.model import ServedModel
from shared.prediction_log import Observer
from shared.v2_request import FEATURES_INPUT, HEADER_LENGTH, InferRequest, InferRequestParser

__all__ = ["HEADER_LENGTH", "OUTPUTS", "OpenInference", "Reply"]

SERVER_NAME = "iris-versions"
EXTENSIONS = ["binary_tensor_data"]
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@functools.cache
def server_version() -> str:
    """The project's version: the installed package's metadata, or pyproject.toml beside shared/ (the images)."""
    try:
        return importlib.metadata.version(SERVER_NAME)
    except importlib.metadata.PackageNotFoundError:
        return tomllib.loads(PYPROJECT.read_text())["project"]["version"]


@dataclass(frozen=True)
class Output:
    name: str
    datatype: str
    shape: Callable[[ServedModel], list[int]]  # as model metadata gives it, -1 for the batch
    compute: Callable[[ServedModel, np.ndarray, np.ndarray], np.ndarray]  # (model, rows, class indices)
    parameters: Callable[[ServedModel], dict[str, Any]] | None = None  # what the tensor's columns are


# MLServer's name for it, so its clients work: [rows, classes], the classes named in column order.
PROBABILITIES = Output("predict_proba", "FP64", lambda model: [-1, len(model.manifest.class_names)],
                       lambda model, rows, indices: model.probabilities(rows).astype("<f8"),
                       lambda model: {"classes": [class_key(name) for name in model.manifest.class_names]})


OUTPUTS: dict[str, Output] = {output.name: output for output in (
    Output("predicted_class", "INT64", lambda model: [-1], lambda model, rows, indices: indices.astype("<i8")),
    Output("class_name", "BYTES", lambda model: [-1],
           lambda model, rows, indices: model.class_names_of(indices)),
    Output("decision_scores", "FP64", lambda model: [-1, len(model.manifest.class_names)],
           lambda model, rows, indices: model.decision_scores(rows).astype("<f8")),
)}
DEFAULT_OUTPUTS = ("predicted_class",)
REGRESSOR_OUTPUTS: dict[str, Output] = {"prediction": Output(
    "prediction", "FP64", lambda model: [-1, model.manifest.outputs] if model.manifest.multi_output else [-1],
    lambda model, rows, values: np.asarray(values, dtype="<f8"))}
NUMPY_OF = {"BOOL": "?", "INT64": "<i8", "FP64": "<f8", "BYTES": object}


def class_datatype(classes: Any) -> str:
    """The V2 datatype that carries these classes in their own type: BOOL, INT64, FP64, else BYTES (text)."""
    values = list(classes)
    if values and all(isinstance(value, bool) for value in values):
        return "BOOL"
    if values and all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "INT64"
    if values and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        return "FP64"
    return "BYTES"


def _typed_output(name: str, datatype: str, shape: Callable[[ServedModel], list[int]],
                  compute: Callable[[ServedModel, np.ndarray, np.ndarray], Any]) -> Output:
    return Output(name, datatype, shape,
                  lambda model, rows, answers: np.asarray(compute(model, rows, answers), dtype=NUMPY_OF[datatype]))


def outputs_of(model: ServedModel) -> tuple[dict[str, Output], tuple[str, ...]]:
    """The outputs this model has, and those a request gets when it names none."""
    manifest = model.manifest
    if manifest.regressor:
        return REGRESSOR_OUTPUTS, ("prediction",)
    if manifest.multi_output:  # a class per output, in the classes' own type (text when the outputs differ)
        datatype = class_datatype([value for classes in manifest.output_classes for value in classes])
        return {"prediction": _typed_output(
            "prediction", datatype, lambda model: [-1, model.manifest.outputs],
            lambda model, rows, answers: [[value if datatype != "BYTES" else class_key(value) for value in row]
                                          for row in answers])}, ("prediction",)
    datatype = class_datatype(manifest.class_names)
    outputs = dict(OUTPUTS)
    if datatype != "BYTES":
        outputs["class_name"] = _typed_output("class_name", datatype, lambda model: [-1],
                                              lambda model, rows, indices: model.class_names_of(indices).tolist())
    if manifest.probabilities:
        outputs[PROBABILITIES.name] = PROBABILITIES
    # A model served from its decision rule is linear (it has decision scores); asking another, already loaded at
    # start-up, costs nothing. Asking a rule's would load scikit-learn at start-up, which the rule is there to spare.
    if model.manifest.source is not None and model.rule is None and not hasattr(model.estimator, "decision_function"):
        return {name: output for name, output in outputs.items() if name != "decision_scores"}, DEFAULT_OUTPUTS
    return outputs, DEFAULT_OUTPUTS


@dataclass(frozen=True)
class Reply:
    """What the web layer sends: a JSON document and, with binary outputs, raw bytes after it."""

    document: dict[str, Any]
    binary: bytes = b""


class OpenInference:
    def __init__(self, model: ServedModel, settings: Settings, observe: Observer | None = None) -> None:
        self.model = model
        self.settings = settings
        self.observe = observe
        self.version = model.manifest.sha256[:12]
        self.outputs, defaults = outputs_of(model)
        missing = {} if PROBABILITIES.name in self.outputs else {PROBABILITIES.name: model.without_probabilities()}
        self.requests = InferRequestParser(model.features, settings.max_batch_rows, list(self.outputs), defaults,
                                           missing)

    # ------------------------------------------------------------ health and metadata

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": server_version(), "extensions": EXTENSIONS}

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
            "inputs": self._inputs(),
            "outputs": [{"name": output.name, "datatype": output.datatype, "shape": output.shape(self.model),
                         **({"parameters": output.parameters(self.model)} if output.parameters else {})}
                        for output in self.outputs.values()],
        }

    def _inputs(self) -> list[dict[str, Any]]:
        features = self.model.features
        if self.model.manifest.source is None:
            return [{"name": FEATURES_INPUT, "datatype": "FP64", "shape": [-1, len(features)]}]
        return [{"name": feature.name, "datatype": "BYTES" if feature.type == STRING else "FP64", "shape": [-1]}
                for feature in features.features]

    # ------------------------------------------------------------ inference

    def infer(self, name: str, version: str | None, body: bytes, header_length: str | None,
              answer_id: str | None = None) -> Reply:
        """`answer_id`: the answer's id (its X-Answer-Id, what a label names), returned as `id` when the request had
        none."""
        self._check_model(name, version)
        return self.reply(self.requests.parse(body, header_length), answer_id)

    def reply(self, request: InferRequest, answer_id: str | None = None) -> Reply:
        if self.model.manifest.regressor or self.model.manifest.multi_output:
            answers = self.model.predict(request.rows)
            indices = answers  # what each output is computed from: the answers themselves
        else:
            indices = self.model.predict_indices(request.rows)
            answers = self.model.class_names_of(indices).tolist()
        documents, binary = [], bytearray()
        confidence = None
        for requested in request.outputs:
            output = self.outputs[requested.name]
            tensor = output.compute(self.model, request.rows, indices)
            if output is PROBABILITIES:
                confidence = tensor.max(axis=1).tolist()
            entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(tensor.shape)}
            if output.parameters is not None:
                entry["parameters"] = output.parameters(self.model)
            if requested.binary:
                raw = _bytes_of(tensor, output.datatype)
                entry["parameters"] = {**entry.get("parameters", {}), "binary_data_size": len(raw)}
                binary += raw
            else:
                entry["data"] = tensor.ravel().tolist()
            documents.append(entry)
        if self.observe is not None:
            self.observe(request.rows, answers, confidence)
        document: dict[str, Any] = {"model_name": self.model.name, "model_version": self.version}
        if request.id is not None or answer_id is not None:
            document["id"] = request.id if request.id is not None else answer_id
        document["outputs"] = documents
        return Reply(document, bytes(binary))


def _bytes_of(tensor: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return tensor.tobytes()  # BOOL: one byte an element, as the binary extension says
    # BYTES elements: a 4-byte little-endian length, then the bytes.
    parts = []
    for element in tensor.ravel().tolist():
        encoded = str(element).encode()
        parts.append(len(encoded).to_bytes(4, "little") + encoded)
    return b"".join(parts)
