"""The report's pictures, drawn with matplotlib (Agg): each version's decision regions with the disagreement
shaded, and a rollout's traffic, request rate, error rate and p99 per revision over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from iris_tools.report.data import TEST_POINT, Points  # noqa: E402
from iris_tools.rollout.records import Record  # noqa: E402

CLASS_COLOURS = ["#3b4cc0", "#dddddd", "#b40426"]  # coolwarm's ends and middle: as in the notebook's figure
DISAGREE_COLOUR = "#ffb000"
REVISION_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]


def compare_png(report: dict[str, Any], grid: Points, data: Points, path: Path) -> Path:
    names = [v["name"] for v in report["versions"]]
    classes = report["classes"]
    index = {c: i for i, c in enumerate(classes)}
    answers = report["_answers"]["grid"]
    xs, ys = np.unique(grid.X[:, 0]), np.unique(grid.X[:, 1])
    shape = (len(ys), len(xs))
    regions = {n: np.array([index[c] for c in answers[n]]).reshape(shape) for n in names}
    disagree = np.zeros(shape, dtype=bool)
    for a in names:
        for b in names:
            disagree |= regions[a] != regions[b]
    figure, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.8), squeeze=False)
    colours = ListedColormap(CLASS_COLOURS[:len(classes)])
    data_classes = [index[label] for label in data.labels] if data.labels else None
    for ax, name in zip(axes[0], names):
        ax.pcolormesh(xs, ys, regions[name], cmap=colours, vmin=0, vmax=len(classes) - 1, alpha=0.45, shading="auto")
        ax.contourf(xs, ys, disagree.astype(float), levels=[0.5, 1.5], colors=[DISAGREE_COLOUR], alpha=0.55,
                    hatches=["//"])
        if data_classes is not None:
            ax.scatter(data.X[:, 0], data.X[:, 1], c=data_classes, cmap=colours, vmin=0, vmax=len(classes) - 1,
                       s=18, edgecolors="black", linewidths=0.5)
        ax.plot(*TEST_POINT, marker="X", color="black", markersize=16, linestyle="none")
        said = report["test_point"][name]
        ax.set_title(f"{name}: {report['versions'][names.index(name)]['algorithm'].rsplit('.', 1)[-1]}\n"
                     f"(5.8, 3.4) -> {said}")
        ax.set_xlabel("sepal length (cm)")
        ax.set_ylabel("sepal width (cm)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=CLASS_COLOURS[i], alpha=0.6) for i in range(len(classes))]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=DISAGREE_COLOUR, alpha=0.6, hatch="//"))
    handles.append(plt.Line2D([], [], marker="X", color="black", linestyle="none", markersize=10))
    agreement = ", ".join(f"{p['a']} vs {p['b']}: {100 * p['agreement']:.1f}% agree" for p in report["pairs"])
    figure.legend(handles, [*classes, "versions disagree", "test point (5.8, 3.4)"], loc="lower center",
                  ncol=len(classes) + 2, fontsize=9, frameon=False)
    figure.suptitle(f"Decision regions; shaded where the versions disagree ({agreement} on iris + grid)",
                    fontsize=11)
    figure.tight_layout(rect=(0, 0.07, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def _series(record: Record) -> dict[str, list[tuple[float, float, float, float, float | None]]]:
    """role -> [(seconds since start, share %, requests/s, 5xx fraction, p99 ms)], from the rollout's samples.
    A sample's figures are cumulative from its step's start: rates come from successive samples in a step."""
    start = record.started
    series: dict[str, list] = {"candidate": [], "stable": []}
    previous: dict[str, tuple[float, int, int]] = {}
    step_of = None
    for sample in record.samples:
        if sample.percent != step_of:
            step_of, previous = sample.percent, {}
            for role in series:  # a break between steps: no line across the traffic change
                series[role].append((sample.at - start, np.nan, np.nan, np.nan, None))
        for role, figures in (("candidate", sample.candidate), ("stable", sample.stable)):
            share = sample.percent if role == "candidate" else 100 - sample.percent
            before = previous.get(role)
            if before is not None and sample.at > before[0]:
                seconds = sample.at - before[0]
                requests = figures.requests - before[1]
                errors = figures.errors - before[2]
                rate = max(0, requests) / seconds
                error_rate = errors / requests if requests > 0 else float("nan")
                series[role].append((sample.at - start, share, rate, error_rate, figures.p99_ms))
            previous[role] = (sample.at, figures.requests, figures.errors)
    return series


def rollout_png(record: Record, path: Path) -> Path:
    series = _series(record)
    names = {"candidate": record.candidate, "stable": record.stable}
    judged = any(step.quality for step in record.steps)  # with LABELS: a panel of each step's accuracy
    figure, axes = plt.subplots(5 if judged else 4, 1, figsize=(10, 11.5 if judged else 9.5), sharex=True)
    labels = ["traffic share (%)", "requests/s", "5xx rate (%)", "p99 (ms, step window)"] + \
        (["accuracy on labels (%)"] if judged else [])
    for role, colour in (("stable", REVISION_COLOURS[0]), ("candidate", REVISION_COLOURS[1])):
        # Traffic share: what each step set, from its start to its end.
        times, shares = [0.0], [0 if role == "candidate" else 100]
        for step in record.steps:
            share = step.percent if role == "candidate" else 100 - step.percent
            times += [step.started - record.started, (step.ended or step.started) - record.started]
            shares += [share, share]
        if record.decision == "rolled back" and record.steps:
            times.append((record.ended or record.steps[-1].ended or record.started) - record.started)
            shares.append(0 if role == "candidate" else 100)
        elif not record.steps and record.ended:  # no step walked (rolled back at 0%): the split never moved
            times.append(max(record.ended - record.started, 1.0))
            shares.append(shares[-1])
        axes[0].step(times, shares, where="post", color=colour, label=f"{role} {names[role]}")
        points = series[role]
        if not points:
            continue
        t = [p[0] for p in points]
        axes[1].plot(t, [p[2] for p in points], color=colour)
        axes[2].plot(t, [100 * p[3] for p in points], color=colour, marker=".", linestyle="-")
        axes[3].plot(t, [np.nan if p[4] in (None, float("inf")) else p[4] for p in points], color=colour,
                     marker=".")
    if judged:
        for role, colour in (("stable", REVISION_COLOURS[0]), ("candidate", REVISION_COLOURS[1])):
            points = [((step.ended or step.started) - record.started, 100 * step.quality[role]["accuracy"],
                       step.quality[role]["labelled"]) for step in record.steps
                      if step.quality and step.quality[role].get("accuracy") is not None]
            axes[4].plot([p[0] for p in points], [p[1] for p in points], color=colour, marker="o")
            for at, accuracy, labelled in points:
                axes[4].annotate(f"{labelled}", (at, accuracy), fontsize=7, color=colour, xytext=(3, 3),
                                 textcoords="offset points")
    for ax, label in zip(axes, labels):
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-5, 118)
    for step in record.steps:
        begin = step.started - record.started
        for ax in axes:
            ax.axvline(begin, color="grey", linestyle=":", linewidth=1)
        colour = "#1a9850" if step.verdict == "promote" else "#d73027"
        axes[0].annotate(f"{step.percent}%: {step.verdict}", (begin, 104), fontsize=8, color=colour,
                         xytext=(3, 0), textcoords="offset points", va="bottom")
    if record.paired:  # the paired check at 0% came first: what it found, before any step
        paired = record.paired
        said = (f"0%: paired check {paired['decision']} on {paired['n']} labelled inputs"
                + (f" (candidate {100 * paired['candidate_accuracy']:.0f}% vs stable "
                   f"{100 * paired['stable_accuracy']:.0f}%)" if "candidate_accuracy" in paired else
                   f" (MAE {paired['candidate_mae']:.4g} vs {paired['stable_mae']:.4g})" if "candidate_mae" in paired
                   else ""))
        axes[0].annotate(said, (0.01, 108), xycoords=("axes fraction", "data"), fontsize=8, va="bottom",
                         color="#d73027" if paired["decision"] == "rollback" else "#1a9850")
    decision = record.decision or "interrupted"
    axes[0].legend(loc="center left", fontsize=8)
    axes[-1].set_xlabel("seconds since the rollout started")
    figure.suptitle(f"Rollout of {names['candidate']} on service {record.service} ({record.target}): "
                    f"{decision}", fontsize=11, color="#d73027" if decision == "rolled back" else "black")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path
