"""A rollout's plan: its steps, each a percent of traffic to the candidate or a pause. Standard library only, and
below both the settings table (iris_tools/environment.py parses STEPS with it) and the rollout that walks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAUSE = "pause"  # a step that holds the split until a person runs `make promote` (or `make rollback`)


@dataclass(frozen=True)
class Step:
    """One step of a plan: a percent of traffic to the candidate, or a pause (percent None)."""

    percent: int | None

    @property
    def pause(self) -> bool:
        return self.percent is None

    def to_json(self) -> int | str:
        return PAUSE if self.percent is None else self.percent

    @classmethod
    def from_json(cls, value: Any) -> "Step":
        if value == PAUSE:
            return cls(None)
        if type(value) is int:
            return cls(value)
        raise ValueError(f"{value!r} is neither a whole percentage nor {PAUSE!r}")

    def text(self) -> str:
        return PAUSE if self.percent is None else f"{self.percent}%"


@dataclass(frozen=True)
class Plan:
    """A rollout's steps: increasing percentages from above 0 that end at 100, a pause after any but the last."""

    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> "Plan":
        """What a person types: "5 25 pause 50 100" (commas allowed). ValueError says what it takes."""
        try:
            steps = tuple(Step.from_json(PAUSE if item == PAUSE else int(item))
                          for item in text.replace(",", " ").split())
        except ValueError:
            raise ValueError('whole percentages and pauses, for example STEPS="5 25 pause 50 100"') from None
        return cls._checked(steps)

    @classmethod
    def _checked(cls, steps: tuple[Step, ...]) -> "Plan":
        percents = [step.percent for step in steps if not step.pause]
        if not percents or percents != sorted(set(percents)) or percents[0] <= 0 or steps[-1].percent != 100 \
                or steps[0].pause or any(a.pause and b.pause for a, b in zip(steps, steps[1:])):
            raise ValueError("increasing percentages from above 0 that end at 100, with a pause (held until "
                             "`make promote`) after any of them but the last")
        return cls(steps)

    def to_json(self) -> list[int | str]:
        return [step.to_json() for step in self.steps]

    @classmethod
    def from_json(cls, value: Any) -> "Plan":
        if not isinstance(value, list):
            raise ValueError(f"is {value!r}, not a list of steps")
        return cls._checked(tuple(Step.from_json(item) for item in value))

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> Step:
        return self.steps[index]

    @property
    def percents(self) -> list[int]:
        """The judged steps: the percentages, pauses left out."""
        return [step.percent for step in self.steps if step.percent is not None]

    def percent_at(self, index: int) -> int:
        """The candidate's share at step `index`: a pause keeps the share of the step before it; 0 before any."""
        return next((step.percent for step in reversed(self.steps[: index + 1]) if step.percent is not None), 0)

    def text(self) -> str:
        return " ".join(step.text() for step in self.steps)
