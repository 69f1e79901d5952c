"""Settings read from the environment once, at start-up.

| variable           | default | meaning                                              |
|--------------------|---------|------------------------------------------------------|
| K_SERVICE          | unset   | Cloud Run service name (set by Cloud Run)            |
| K_REVISION         | unset   | Cloud Run revision serving this instance (null when unset) |
| K_CONFIGURATION    | unset   | Cloud Run configuration the revision belongs to      |
| MAX_BATCH_ROWS     | 10000   | most instances one POST may carry                    |
| MAX_REQUEST_BYTES  | 4194304 | largest request body accepted (4 MiB)                |

`PORT` (default 8080) is read by functions-framework itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigError

DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    service: str | None = None
    revision: str | None = None
    configuration: str | None = None
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            service=environ.get("K_SERVICE") or None,
            revision=environ.get("K_REVISION") or None,
            configuration=environ.get("K_CONFIGURATION") or None,
            max_batch_rows=_positive_int(environ, "MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
            max_request_bytes=_positive_int(environ, "MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
        )


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; unset it to use {default}") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1; unset it to use {default}")
    return value
