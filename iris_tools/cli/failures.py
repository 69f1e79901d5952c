"""How the tools' commands fail: one exception for a refusal or a stop, the exit status, and the one line that
explains an API that did not answer. Each package's refusals (the rollout's, the outcomes') are ToolErrors."""

from __future__ import annotations

import sys

from iris_tools.environment import SettingError
from iris_tools.google.api import ApiError
from iris_tools.google.gcloud import GcloudError

EXIT_FAILED = 1  # refused, or failed: the message says why


class ToolError(Exception):
    """The command cannot go on; the message says why and what to do."""


def unreachable(exc: ApiError, target: str) -> str:
    """One line for an Admin or Monitoring API call that failed outside a rollout (nothing was changed)."""
    if exc.status == 0:
        hint = ("is the local Cloud Run running? `make emulator` starts it" if target == "local"
                else "check your network, proxy and `gcloud config list`; API_TIMEOUT_S sets how long to wait")
        return f"the Cloud Run APIs of {target} did not answer ({exc}); {hint}. Nothing was changed."
    return f"the Cloud Run APIs of {target} refused the call ({exc}). Nothing was changed."


def failed(exc: Exception, target: str) -> int:
    """What a command does with a refusal, a bad setting, gcloud's error or an API that failed: one line on stderr
    that says what went wrong and what to do, and EXIT_FAILED."""
    print(f"error: {unreachable(exc, target) if isinstance(exc, ApiError) else exc}", file=sys.stderr)
    return EXIT_FAILED


# Everything a command answers with `failed`, never a traceback.
COMMAND_FAILURES: tuple[type[Exception], ...] = (ToolError, SettingError, GcloudError, ApiError)
