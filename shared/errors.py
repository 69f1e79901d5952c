"""Every failure the service can report, each tied to its HTTP status.

Request errors are `ServingError`s: one handler (`shared.function`) renders them
all as `{"error": <message>, "code": <code>, "field": <field>}`. Start-up refusals
are `ModelLoadError`s: the function does not start and says which check failed.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """A request that cannot be answered; `status` is its HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        return body

    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(ServingError):
    status = 400
    code = "invalid_input"


class NotFound(ServingError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServingError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(f"{method} is not allowed on {path}; use {', '.join(allowed)}")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class RowsRefused(ServingError):
    """Rows of the right shape and types that the model itself refuses (its own ValueError: a RadiusNeighbors model
    with no neighbour in reach, a category its encoder never saw)."""

    status = 422
    code = "model_refused_rows"


class SignatureRefused(ServingError):
    """A label (POST /feedback) whose signature is missing, malformed, stale or made with another key."""

    status = 401
    code = "bad_signature"


class FeedbackOff(ServingError):
    """POST /feedback on a service with no FEEDBACK_KEY."""

    status = 403
    code = "feedback_disabled"


class PredictorUnavailable(ServingError):
    """A model whose estimator runs in a process of its own (PREDICTOR_PROCESS=1), that process dead twice."""

    status = 503
    code = "model_process_failed"


class PayloadTooLarge(ServingError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported_media_type"


class ModelLoadError(Exception):
    """The model cannot be served; the message says which check failed and the fix."""


class ConfigError(ModelLoadError):
    """An environment variable holds a value the service cannot use."""
