"""`make console`: the migration console on 127.0.0.1, for TARGET=local (the local Cloud Run) or cloudrun.

Settings (environment): TARGET, SERVICE (the service shown first; every service is listed), PROJECT, REGION as
for the rollout; CONSOLE_PORT (default 5080; 0 picks a free one); CONSOLE_PERIOD_S, the charts' point width
(default 2 locally, 60 on Cloud Run, where Cloud Monitoring aligns to a minute at the finest). The page reads
the same APIs the rollout does, through the gcloud configuration in use; it needs nothing from the internet.
"""

from __future__ import annotations

import os
import signal
import sys

from werkzeug.serving import WSGIRequestHandler, make_server

from iris_tools import environment
from iris_tools.console.app import create_app
from iris_tools.console.view import View
from iris_tools.google.gcloud import Gcloud
from iris_tools.google.monitoring import Monitoring
from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.cli.failures import COMMAND_FAILURES, EXIT_FAILED, failed
from iris_tools.rollout.settings import RolloutSettings

class QuietPolls(WSGIRequestHandler):
    """Logs every request but the page's own successful reads (two every refresh): changes and failures stay."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.command == "GET" and str(code).startswith(("2", "3")):
            return
        super().log_request(code, size)


def _stop(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends serve_forever as Ctrl-C does


def main() -> int:
    target = "cloudrun"
    try:
        env = environment.read(os.environ, "rollout", "quality", "console")
        target = env.target
        gcloud = Gcloud(target, env["PROJECT"], env["REGION"])
        service = CloudRunService(gcloud, RolloutSettings.from_environment(env))
        view = View(service, Monitoring.from_gcloud(gcloud), env["RUN_DIR"], env["CONSOLE_PERIOD_S"])
        view.services()  # the API answers (or the user hears why not) before a URL is printed
    except COMMAND_FAILURES as exc:
        return failed(exc, target)
    port = env["CONSOLE_PORT"]
    app = create_app(view)
    try:
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietPolls)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{port} ({exc.strerror}); CONSOLE_PORT=0 picks a free port",
              file=sys.stderr)
        return EXIT_FAILED
    app.config["CONSOLE_PORT"] = server.server_port
    signal.signal(signal.SIGTERM, _stop)
    print(f"console of service {service.name} on {target} ({gcloud.project}): "
          f"http://127.0.0.1:{server.server_port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
