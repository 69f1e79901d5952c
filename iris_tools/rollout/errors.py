"""How the rollout tools fail: one exception for a refusal or a stop, the exit statuses, and the one line that
explains an API that did not answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iris_tools.google.api import ApiError

EXIT_FAILED = 1  # refused, or failed: the message says why
EXIT_ROLLED_BACK = 3


class RolloutError(Exception):
    """The rollout cannot go on; the message says why and what to do."""


def unreachable(exc: "ApiError", target: str) -> str:
    """One line for an Admin or Monitoring API call that failed outside a rollout (nothing was changed)."""
    if exc.status == 0:
        hint = ("is the local Cloud Run running? `make emulator` starts it" if target == "local"
                else "check your network, proxy and `gcloud config list`; API_TIMEOUT_S sets how long to wait")
        return f"the Cloud Run APIs of {target} did not answer ({exc}); {hint}. Nothing was changed."
    return f"the Cloud Run APIs of {target} refused the call ({exc}). Nothing was changed."
