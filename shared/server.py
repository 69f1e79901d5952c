"""Production entry point of the container images: functions-framework's own server, tuned for Cloud Run.

    python -m shared.server        (reads FUNCTION_SOURCE, FUNCTION_TARGET, PORT, HOST, GRACEFUL_TIMEOUT_S)

It is what `functions-framework --target predict --source ...` runs (the
framework's app under its gunicorn server, no debug), with one change: on
SIGTERM, in-flight requests get GRACEFUL_TIMEOUT_S (default 8) seconds to finish,
inside Cloud Run's 10 s grace, instead of gunicorn's 30. Logs are JSON lines on stdout.
Settings are read by `shared.config.ServerSettings`: a bad value stops start-up with
a message naming the variable, not a traceback.
"""

from __future__ import annotations

import sys

from functions_framework import create_app

# The framework's server factory; the CLI offers no flag for the grace period.
from functions_framework._http import create_server

from shared.config import ServerSettings
from shared.errors import ConfigError
from shared.logs import log_to_stdout


def main() -> None:
    try:
        settings = ServerSettings.from_env()
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log_to_stdout()
    app = create_app(settings.function_target, settings.function_source)
    server = create_server(app, False, graceful_timeout=settings.graceful_timeout_s)
    server.run(settings.host, settings.port)


if __name__ == "__main__":
    main()
