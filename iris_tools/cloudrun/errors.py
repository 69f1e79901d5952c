"""Google API errors, as Cloud Run's Admin API sends them and gcloud prints them.

    400 with fieldViolations  ->  ERROR: (gcloud.run.<cmd>) <field>: <description>
    anything else             ->  ERROR: (gcloud.run.<cmd>) <STATUS>: <message>
"""

from __future__ import annotations

from typing import Any

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class RpcError(Exception):
    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str, violations: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.violations:
            error["details"] = [{"@type": BAD_REQUEST_TYPE, "fieldViolations": [
                {"field": field, "description": description} for field, description in self.violations]}]
        return {"error": error}


class InvalidArgument(RpcError):
    http_status = 400
    status = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str) -> "InvalidArgument":
        return cls(f"{field}: {description}", [(field, description)])


class FailedPrecondition(RpcError):
    http_status = 400
    status = "FAILED_PRECONDITION"


class Unauthenticated(RpcError):
    http_status = 401
    status = "UNAUTHENTICATED"


class PermissionDenied(RpcError):
    http_status = 403
    status = "PERMISSION_DENIED"


class ResourceNotFound(RpcError):
    http_status = 404
    status = "NOT_FOUND"


class Unimplemented(RpcError):
    http_status = 405
    status = "UNIMPLEMENTED"


class AlreadyExists(RpcError):
    http_status = 409
    status = "ALREADY_EXISTS"


class Aborted(RpcError):
    http_status = 409
    status = "ABORTED"


class RequestTooLarge(RpcError):
    http_status = 413
    status = "INVALID_ARGUMENT"
