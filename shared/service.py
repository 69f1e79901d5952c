"""The routes of one model version as plain functions: values in, JSON-ready dicts out.

The web layer (`shared.function`) maps HTTP onto these; they raise ServingError
subclasses for anything a client got wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from shared.config import Settings
from shared.errors import InvalidInput, UnsupportedMediaType
from shared.inputs import parse_instances, parse_json, parse_query
from shared.artifact import class_key
from shared.model import SMALL_BATCH, ServedModel
from shared.numbers import FLOAT_LIMITS
from shared.prediction_log import Observer


def _ignore(rows: Any, predictions: Any, confidence: Any = None) -> None:
    pass

JSON_MEDIA_TYPE = "application/json"
FP64_MAX = FLOAT_LIMITS["FP64"]
OUTPUT_PARAMETER = "output"  # GET /?...&output=probabilities (unless a feature of the model has that name)
PROBABILITIES = "probabilities"


class Service:
    def __init__(self, model: ServedModel, settings: Settings, observe: Observer = _ignore) -> None:
        self.model = model
        self.settings = settings
        self.observe = observe  # told the rows and the answers of every prediction (the prediction log)
        self._identity = {"model": model.name, "revision": settings.revision}
        # GET /'s answer as text, for a classifier whose classes are all strings (json.dumps's separators, so the
        # text is what json_text of predict_query's dict would be): the request's name, one piece per feature,
        # the model and revision.
        manifest = model.manifest
        self._texts_answers = not (manifest.regressor or manifest.multi_output) and all(
            isinstance(name, str) for name in manifest.class_names)
        self._query_pieces = tuple(f", {json.dumps(feature.name)}: " for feature in model.features.features)
        self._query_tail = ", " + json.dumps(self._identity)[1:]
        self._class_keys = [class_key(name) for name in manifest.class_names]  # JSON object keys are text

    def predict_query(self, params: Mapping[str, list[str]]) -> dict[str, Any]:
        """GET /?length=5.8&width=3.4: the tutorial's answer, plus which model and revision gave it. A regressor
        answers `prediction` (a number) where a classifier answers `predicted_class`; `&output=probabilities` adds
        the classifier's probability of each class."""
        wants_probabilities = False
        if OUTPUT_PARAMETER in params and OUTPUT_PARAMETER not in self.model.features.position:
            params = dict(params)
            wants_probabilities = self._wants_probabilities(params.pop(OUTPUT_PARAMETER), OUTPUT_PARAMETER)
        row = parse_query(self.model.features, params)
        answer = self.model.predict_one(row)
        body: dict[str, Any] = {"prediction" if self.model.manifest.regressor else "predicted_class": answer}
        confidence = None
        if wants_probabilities:
            named = self._named_probabilities(np.array([row], dtype=self.model.features.dtype))
            body[PROBABILITIES] = named[0]
            confidence = [max(named[0].values())]
        self.observe((row,), (answer,), confidence)
        for feature, value in zip(self.model.features.features, row):
            body[feature.name] = value if value == value else None  # NaN (a missing value) is JSON's null
        body.update(self._identity)
        return body

    def _wants_probabilities(self, outputs: Any, field: str) -> bool:
        """A request's outputs (GET's `output` values, POST's `outputs` list): only "probabilities" is one."""
        if not isinstance(outputs, list) or not outputs or not all(isinstance(item, str) for item in outputs):
            raise InvalidInput(f'{field}: expected a list of output names, such as ["{PROBABILITIES}"]', field=field,
                               code="invalid_body")
        for name in outputs:
            if name != PROBABILITIES:
                raise InvalidInput(f"{field}: unknown output {name[:100]!r}; the outputs on offer: {PROBABILITIES}",
                                   field=field, code="unknown_output")
        if not self.model.manifest.probabilities:
            raise InvalidInput(f"{field}: {self.model.without_probabilities()}", field=field, code="no_probabilities")
        return True

    def _named_probabilities(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each row's predict_proba as {class: probability}, in the model's class order."""
        keys = self._class_keys
        return [dict(zip(keys, values)) for values in self.model.probabilities(rows).tolist()]

    def answer_query(self, query_string: str) -> str | None:
        """GET /'s answer as JSON text, for the request almost every client sends (every feature once, plain
        numbers) to a classifier of named classes: the same text as `predict_query`'s answer encoded, without
        the dict. None for anything else: the caller asks `predict_query`, which answers it or says what is
        wrong."""
        if not self._texts_answers:
            return None
        row = self.model.features.numbers_from_query(query_string)
        if row is None:
            return None
        answer = self.model.predict_one(row)
        self.observe((row,), (answer,))
        return (f'{{"predicted_class": {encode_basestring_ascii(answer)}'
                + "".join([piece + float.__repr__(value) for piece, value in zip(self._query_pieces, row)])
                + self._query_tail)

    def predict_batch(
        self, body: bytes, content_type: str | None, params: Mapping[str, list[str]]
    ) -> dict[str, Any]:
        """POST / with {"instances": [...]}: {"predictions": [...]} in the same order."""
        if params:
            name = next(iter(params))
            raise InvalidInput(
                f"{name}: query parameters are not read on POST; send the instances in the JSON body",
                field=name,
                code="unknown_field",
            )
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            raise UnsupportedMediaType(
                f"Content-Type: expected {JSON_MEDIA_TYPE}, got {content_type or 'none'}", field="Content-Type"
            )
        if not body:
            raise InvalidInput('body: empty; send {"instances": [[length, width], ...]}', field="body", code="empty_body")
        document = parse_json(body)
        wants_probabilities = False
        if isinstance(document, dict) and "outputs" in document:
            document = dict(document)
            wants_probabilities = self._wants_probabilities(document.pop("outputs"), "outputs")
        if not wants_probabilities:
            plain = self._answer_plain(document)
            if plain is not None:
                return plain
        rows = parse_instances(self.model.features, document, self.settings.max_batch_rows)
        predictions = self.model.predict(rows)
        if not wants_probabilities:
            self.observe(rows, predictions)
            return {"predictions": predictions, **self._identity}
        named = self._named_probabilities(rows)
        self.observe(rows, predictions, [max(row.values()) for row in named])
        return {"predictions": predictions, PROBABILITIES: named, **self._identity}

    def _answer_plain(self, document: Any) -> dict[str, Any] | None:
        """The answer to `{"instances": [[5.8, 3.4], ...]}`, a few rows of plain numbers, for a model served from its
        decision rule: each row asked of the rule as Python floats, no arrays in between. None for anything else
        (the general path then answers it, or says what is wrong), and when the rule cannot call a row (then the
        whole request is scikit-learn's, as on the general path)."""
        if self.model.rule is None or not isinstance(document, dict) or len(document) != 1:
            return None
        instances = document.get("instances")
        if type(instances) is not list or not 0 < len(instances) <= min(SMALL_BATCH, self.settings.max_batch_rows):
            return None  # more than MAX_BATCH_ROWS: the general path's 413
        width = len(self.model.features)
        if set(map(type, instances)) != {list} or set(map(len, instances)) != {width}:
            return None
        values = [value for instance in instances for value in instance]
        if not set(map(type, values)) <= {int, float} or not all(-FP64_MAX <= value <= FP64_MAX for value in values):
            return None  # NaN fails the comparison too
        rows = [tuple(map(float, instance)) for instance in instances]
        predictions = self.model.predict_plain(rows)
        if predictions is None:
            return None
        self.observe(rows, predictions)
        return {"predictions": predictions, **self._identity}

    def metadata(self) -> dict[str, Any]:
        """The model's manifest, who serves it, and the limits that apply."""
        return {
            "model": self.model.manifest.to_json(),
            "serving": {
                "service": self.settings.service,
                "revision": self.settings.revision,
                "configuration": self.settings.configuration,
            },
            "limits": {
                "max_batch_rows": self.settings.max_batch_rows,
                "max_request_bytes": self.settings.max_request_bytes,
            },
        }

    def health(self) -> dict[str, Any]:
        return {"status": "ok", **self._identity}
