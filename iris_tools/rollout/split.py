"""A traffic split: revision -> percent, in one value from what a person types to what the service is sent.

    Split.parse("svc=90 lin_svc=10", resolve)   what a person types (models or revisions), adding to 100
    Split.of(service)                           what a service reports it routes (status.traffic)
    Split.between(stable, candidate, 10)        a rollout step's
    str(split)                                  "iris-00001-abc 90%, iris-00002-def 10%", for people
    split.targets(tags)                         Knative's spec.traffic, the service's tags kept

It is written only by CloudRunService.write, together with the rollout's annotations, in one compare-and-swap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from iris_tools.rollout.errors import RolloutError


@dataclass(frozen=True)
class Split:
    shares: tuple[tuple[str, int], ...]  # (revision, percent), each above 0, in the order given

    @classmethod
    def of_mapping(cls, shares: dict[str, int]) -> "Split":
        merged: dict[str, int] = {}
        for revision, percent in shares.items():
            if percent:
                merged[revision] = merged.get(revision, 0) + int(percent)
        return cls(tuple(merged.items()))

    @classmethod
    def parse(cls, text: str, resolve: Callable[[str], str]) -> "Split":
        """SPLIT="svc=90 lin_svc=10": each NAME (a model or a revision) resolved to a revision; RolloutError
        unless every item is NAME=PERCENT and they add to 100."""
        merged: dict[str, int] = {}
        for item in text.replace(",", " ").split():
            name, sep, percent = item.partition("=")
            if not sep or not percent.isdigit():
                raise RolloutError(f"SPLIT: {item!r} is not NAME=PERCENT (example: SPLIT=\"svc=90 lin_svc=10\")")
            revision = resolve(name)
            merged[revision] = merged.get(revision, 0) + int(percent)
        if sum(merged.values()) != 100:
            raise RolloutError(f"SPLIT: the shares add up to {sum(merged.values())}, not 100")
        return cls.of_mapping(merged)

    @classmethod
    def of(cls, service: dict[str, Any]) -> "Split":
        """What the service routes now, from its status (a revision named twice is summed)."""
        found: dict[str, int] = {}
        for target in (service.get("status") or {}).get("traffic", []):
            if target.get("percent"):
                name = target.get("revisionName")
                found[name] = found.get(name, 0) + int(target["percent"])
        return cls.of_mapping(found)

    @classmethod
    def all_on(cls, revision: str) -> "Split":
        return cls(((revision, 100),))

    @classmethod
    def between(cls, stable: str, candidate: str, percent: int) -> "Split":
        return cls.of_mapping({stable: 100 - percent, candidate: percent})

    def percent(self, revision: str) -> int:
        return dict(self.shares).get(revision, 0)

    def revisions(self) -> Iterator[str]:
        return (revision for revision, _ in self.shares)

    def largest(self) -> str | None:
        return max(self.shares, key=lambda share: share[1])[0] if self.shares else None

    def whole(self) -> str | None:
        """The revision with 100%, if one has it all."""
        return self.shares[0][0] if len(self.shares) == 1 and self.shares[0][1] == 100 else None

    def as_dict(self) -> dict[str, int]:
        return dict(self.shares)

    def __eq__(self, other: object) -> bool:  # the same shares, whatever their order
        return isinstance(other, Split) and dict(self.shares) == dict(other.shares)

    def __hash__(self) -> int:
        return hash(frozenset(self.shares))

    def __str__(self) -> str:
        return ", ".join(f"{revision} {percent}%" for revision, percent in self.shares) or "no traffic"

    def targets(self, service: dict[str, Any]) -> list[dict[str, Any]]:
        """spec.traffic for this split: a target per share, then the service's tags as they are (no percent)."""
        tags = [{key: value for key, value in target.items() if key != "percent"}
                for target in (service.get("spec") or {}).get("traffic", []) if target.get("tag")]
        return [{"revisionName": revision, "percent": percent} for revision, percent in self.shares] + tags
