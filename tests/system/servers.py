"""Real servers for system tests, through the one server-lifecycle module: started on free ports, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iris_tools.local.servers import ServerError
from iris_tools.local.versions import function_command, start_function

__all__ = ["function_command", "function_server"]


@contextmanager
def function_server(source: Path, port: int, **environment: str) -> Iterator[str]:
    """functions-framework on `source`, ready on `port`; its URL while the block runs."""
    server = start_function(source, port, env=environment)
    try:
        try:
            server.wait_ready("/health", timeout=60)
        except ServerError as exc:
            raise AssertionError(str(exc)) from None
        yield server.url
    finally:
        server.stop()
