"""How the rollout tools fail: one exception for a refusal or a stop, and the exit statuses."""

from __future__ import annotations

EXIT_FAILED = 1  # refused, or failed: the message says why
EXIT_ROLLED_BACK = 3


class RolloutError(Exception):
    """The rollout cannot go on; the message says why and what to do."""
