"""How the rollout tools fail: the rollout's own refusal (a ToolError, so every command answers it as any other)
and the exit status of a rollout that rolled back. The shared failure handling is iris_tools/cli/failures.py."""

from __future__ import annotations

from iris_tools.cli.failures import ToolError

EXIT_ROLLED_BACK = 3


class RolloutError(ToolError):
    """The rollout cannot go on; the message says why and what to do."""
