"""Settings read from the environment once, at start-up.

| variable           | default | meaning                                              |
|--------------------|---------|------------------------------------------------------|
| K_SERVICE          | unset   | Cloud Run service name (set by Cloud Run)            |
| K_REVISION         | unset   | Cloud Run revision serving this instance (null when unset) |
| K_CONFIGURATION    | unset   | Cloud Run configuration the revision belongs to      |
| MAX_BATCH_ROWS     | 10000   | most instances one POST may carry                    |
| MAX_REQUEST_BYTES  | 4194304 | largest request body accepted (4 MiB)                |
| LOG_PREDICTIONS    | 1       | fraction of answered predictions logged (0 to 1; 0 turns it off) |
| LOG_MAX_ROWS       | 100     | most input rows one prediction log line carries (a batch says how many it had) |
| GOOGLE_CLOUD_PROJECT | unset | the project, for the trace a prediction log line names (Cloud Logging correlates) |
| BATCH_SIZE         | 32      | most rows one estimator predict takes from concurrent requests (1: each request alone) |
| BATCH_WAIT_MS      | 2       | longest a batch waits for requests the server has begun and that are on their way (0: never waits) |
| PREDICTOR_PROCESS  | 0       | 1: a model whose requests batch predicts in a process of its own, fed the batches (a heavy model under concurrency: docs/serving.md) |
| FEEDBACK_KEY       | unset   | the key a label posted to /feedback is signed with (unset: /feedback answers 403); at least 16 characters |
| FEEDBACK_KEY_PREVIOUS | unset | the key before, also accepted while a rotation is under way |
| OMP_NUM_THREADS    | 1       | OpenMP threads per request thread (set by the handler unless given) |

The container's server (`python -m shared.server`) also reads, through `ServerSettings`:

| variable           | default  | meaning                                              |
|--------------------|----------|------------------------------------------------------|
| PORT               | 8080     | port to listen on (Cloud Run sets it)                |
| HOST               | 0.0.0.0  | address to listen on                                 |
| GRACEFUL_TIMEOUT_S | 8        | seconds in-flight requests get after SIGTERM (Cloud Run allows 10) |
| FUNCTION_TARGET    | predict  | the function in the source file                      |
| FUNCTION_SOURCE    | main.py  | the model version's main.py                          |

Under `functions-framework` itself, the framework reads `PORT`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigError
from shared.feedback_signature import keys_from

DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_LOG_PREDICTIONS = 1.0
DEFAULT_LOG_MAX_ROWS = 100
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_PREDICTOR_PROCESS = False
DEFAULT_PORT = 8080
DEFAULT_GRACEFUL_TIMEOUT_S = 8


@dataclass(frozen=True)
class Settings:
    service: str | None = None
    revision: str | None = None
    configuration: str | None = None
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_predictions: float = DEFAULT_LOG_PREDICTIONS
    log_max_rows: int = DEFAULT_LOG_MAX_ROWS
    project: str | None = None  # GOOGLE_CLOUD_PROJECT: names the trace in a prediction log line
    batch_size: int = DEFAULT_BATCH_SIZE  # BATCH_SIZE: rows one estimator predict takes from concurrent requests
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS  # BATCH_WAIT_MS: a batch's wait for requests on their way
    feedback_keys: tuple[str, ...] = ()  # FEEDBACK_KEY (and FEEDBACK_KEY_PREVIOUS): who may post labels
    predictor_process: bool = DEFAULT_PREDICTOR_PROCESS  # PREDICTOR_PROCESS: a batching model's estimator apart

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            service=environ.get("K_SERVICE") or None,
            revision=environ.get("K_REVISION") or None,
            configuration=environ.get("K_CONFIGURATION") or None,
            project=environ.get("GOOGLE_CLOUD_PROJECT") or None,
            max_batch_rows=_positive_int(environ, "MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
            max_request_bytes=_positive_int(environ, "MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
            log_predictions=_fraction(environ, "LOG_PREDICTIONS", DEFAULT_LOG_PREDICTIONS),
            log_max_rows=_positive_int(environ, "LOG_MAX_ROWS", DEFAULT_LOG_MAX_ROWS),
            batch_size=_positive_int(environ, "BATCH_SIZE", DEFAULT_BATCH_SIZE),
            batch_wait_ms=_milliseconds(environ, "BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS),
            feedback_keys=keys_from(environ),
            predictor_process=_switch(environ, "PREDICTOR_PROCESS", DEFAULT_PREDICTOR_PROCESS),
        )


@dataclass(frozen=True)
class ServerSettings:
    port: int = DEFAULT_PORT
    host: str = "0.0.0.0"
    graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S
    function_target: str = "predict"
    function_source: str = "main.py"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ServerSettings":
        return cls(
            port=_int_in_range(environ, "PORT", DEFAULT_PORT, 1, 65535),
            host=environ.get("HOST") or "0.0.0.0",
            graceful_timeout_s=_int_in_range(environ, "GRACEFUL_TIMEOUT_S", DEFAULT_GRACEFUL_TIMEOUT_S, 0, 3600),
            function_target=environ.get("FUNCTION_TARGET") or "predict",
            function_source=environ.get("FUNCTION_SOURCE") or "main.py",
        )


def _float_in_range(environ: Mapping[str, str], name: str, default: float, low: float, high: float,
                    number: str, bounds: str) -> float:
    """A float from `low` to `high`; the refusal names the variable, what it is (`number`) and its `bounds`."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {number}; unset it to use {default:g}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be {bounds}; unset it to use {default:g}")
    return value


def _switch(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    if raw not in ("0", "1"):
        raise ConfigError(f"{name}={raw!r}: expected 1 (on) or 0 (off)")
    return raw == "1"


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    return _float_in_range(environ, name, default, 0.0, 1.0, "a number", "a fraction from 0 to 1")


def _milliseconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A wait in milliseconds, from 0 to 1000 (a batch that waits longer than a second serves no one)."""
    return _float_in_range(environ, name, default, 0.0, 1000.0, "a number of milliseconds",
                           "from 0 to 1000 milliseconds")


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    return _int_in_range(environ, name, default, 1, None)


def _int_in_range(environ: Mapping[str, str], name: str, default: int, least: int, most: int | None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; unset it to use {default}") from None
    if value < least:
        raise ConfigError(f"{name}={raw!r} must be at least {least}; unset it to use {default}")
    if most is not None and value > most:
        raise ConfigError(f"{name}={raw!r} must be at most {most}; unset it to use {default}")
    return value
