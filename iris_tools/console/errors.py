"""How the console fails, in one place: each exception is an HTTP status and a JSON body
`{"error": {"code": <status>, "status": <name>, "message": <text>}}`, as Google's APIs answer."""

from __future__ import annotations

from typing import Any

from iris_tools.cli.failures import ToolError
from iris_tools.google.api import ApiError
from iris_tools.google.gcloud import GcloudError


class ConsoleError(Exception):
    status = 400
    name = "INVALID_ARGUMENT"


class BadRequest(ConsoleError):
    pass


class Forbidden(ConsoleError):
    status = 403
    name = "PERMISSION_DENIED"


class Missing(ConsoleError):
    status = 404
    name = "NOT_FOUND"


def error_body(status: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "status": name, "message": message}}


def as_response(exc: Exception) -> tuple[dict[str, Any], int]:
    """The status and body for an exception the console's handlers let through (a bug: 500, no trace in the body)."""
    if isinstance(exc, ConsoleError):
        return error_body(exc.status, exc.name, str(exc)), exc.status
    if isinstance(exc, (ToolError, GcloudError)):  # the tools' refusals, word for word: nothing was changed
        return error_body(409, "FAILED_PRECONDITION", str(exc)), 409
    if isinstance(exc, ApiError):  # the Admin or Monitoring API did not answer as asked
        status = exc.status if 400 <= exc.status < 500 else 502
        return error_body(status, "UNAVAILABLE" if status == 502 else "FAILED_PRECONDITION",
                          f"the API answered: {exc}"), status
    return error_body(500, "INTERNAL", f"the console failed ({type(exc).__name__}); its log has the details"), 500
