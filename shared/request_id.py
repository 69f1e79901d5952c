"""Every answer's id, so a label that comes back later can be joined to the prediction it judges.

The id is the client's `X-Request-Id` when it sends a usable one (1 to 128 characters of letters, digits and
`._:/+=-`); otherwise the trace id of `X-Cloud-Trace-Context` (`TRACE_ID/SPAN_ID;o=1`, which Cloud Run sets on
every request); otherwise a new one. It goes back as the `X-Request-Id` response header on every route, errors
included, and into the prediction log line (with `logging.googleapis.com/trace` when there is a trace and the
project is known, as Cloud Logging correlates them).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

HEADER = "X-Request-Id"
TRACE_HEADER = "X-Cloud-Trace-Context"
USABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/|;|$)")
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class RequestId:
    value: str
    trace: str | None = None  # the Cloud Trace id, when the request carried one

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> "RequestId":
        trace_match = TRACE.match(headers.get(TRACE_HEADER) or "")
        trace = trace_match.group(1).lower() if trace_match else None
        given = headers.get(HEADER) or ""
        if USABLE.fullmatch(given):
            return cls(given, trace)
        return cls(trace or uuid.uuid4().hex, trace)

    def trace_resource(self, project: str | None) -> str | None:
        """`projects/<project>/traces/<trace>`: what Cloud Logging's `logging.googleapis.com/trace` holds."""
        return f"projects/{project}/traces/{self.trace}" if self.trace and project else None
