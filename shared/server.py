"""Production entry point of the container images: functions-framework's own server, tuned for Cloud Run.

    python -m shared.server        (reads FUNCTION_SOURCE, FUNCTION_TARGET, PORT, HOST)

It is what `functions-framework --target predict --source ...` runs (the
framework's app under its gunicorn server, no debug), with one change: on
SIGTERM, in-flight requests get GRACEFUL_TIMEOUT_S (default 8) seconds to finish,
inside Cloud Run's 10 s grace, instead of gunicorn's 30. Logs are JSON lines on stdout.
"""

from __future__ import annotations

import os

from functions_framework import create_app

from shared.logs import log_to_stdout

# The framework's server factory; the CLI offers no flag for the grace period.
from functions_framework._http import create_server

DEFAULT_PORT = 8080
DEFAULT_GRACEFUL_TIMEOUT_S = 8


def main() -> None:
    log_to_stdout()
    app = create_app(os.environ.get("FUNCTION_TARGET", "predict"), os.environ.get("FUNCTION_SOURCE", "main.py"))
    graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT_S", DEFAULT_GRACEFUL_TIMEOUT_S))
    server = create_server(app, False, graceful_timeout=graceful_timeout)
    server.run(os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", DEFAULT_PORT)))


if __name__ == "__main__":
    main()
