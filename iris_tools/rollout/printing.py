"""What the rollout tools print: figures as text, the live line of a step, and the summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iris_tools.cli.tables import table
from iris_tools.google.monitoring import Figures

if TYPE_CHECKING:
    from iris_tools.rollout.records import StepResult


def rate(f: Figures) -> str:
    return "-" if f.error_rate is None else f"{100 * f.error_rate:.1f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:g} ms"


def figures_text(name: str, f: Figures) -> str:
    p99 = "-" if f.p99_ms is None else f"{f.p99_ms:g}"
    return f"{name} {f.requests} req 5xx {rate(f)} p99 {p99} ms"


def live_line(index: int, steps: int, percent: int, left: float, mine: Figures, theirs: Figures) -> str:
    return (f"step {index + 1}/{steps} {percent}%  {left:4.0f} s left  "
            f"{figures_text('candidate', mine)} | {figures_text('stable', theirs)}")


def quality_text(quality: dict[str, Any] | None) -> str:
    """The quality check's figures, for the live line: labels and accuracy of each revision."""
    if not quality:
        return ""

    def one(side: dict[str, Any]) -> str:
        accuracy, coverage = side.get("accuracy"), side.get("coverage")
        return (f"{side.get('labelled', 0)} labels" + ("" if coverage is None else f" ({100 * coverage:.0f}% of answers)")
                + ("" if accuracy is None else f" {100 * accuracy:.1f}%"))

    seen = quality.get("seen") or {}
    conflicts = f", {seen['conflicts']} conflicting" if seen.get("conflicts") else ""
    read = f" (read {seen['predictions']} predictions, {seen['labels']} labels{conflicts})" if seen else ""
    return f" | answers: candidate {one(quality['candidate'])}, stable {one(quality['stable'])}{read}"


def summary(steps: list[StepResult]) -> str:
    """The table printed at the end of a rollout: one row per step, with each revision's figures."""
    rows = [["step", "share", "seconds", "cand req", "cand 5xx", "cand p99", "stable req", "stable 5xx",
             "stable p99", "verdict"]]
    for number, step in enumerate(steps, 1):
        c, s = step.candidate, step.stable
        rows.append([str(number), f"{step.percent}%", f"{(step.ended or step.started) - step.started:.0f}",
                     str(c.requests), rate(c), ms(c.p99_ms), str(s.requests), rate(s), ms(s.p99_ms), step.verdict])
    return "\n" + table(rows)
