"""A shadow comparison at 0% traffic: the inputs the stable revision served recently, replayed to the candidate.

    1. the candidate: the newest ready revision of MODEL behind a tag (deployed with no traffic if there is none);
    2. the inputs: the stable revision's prediction log lines (`gcloud logging read`, on either target), with
       the answers users got and the stable revision's own latency;
    3. each input sent once to the candidate's tag URL (never to the service URL: users never see these
       answers), two at a time, its latency read from the Server-Timing header the function sets;
    4. the report: agreement with a 95% Wilson interval, the confusion table, each version's class mix and a
       paired (Stuart-Maxwell) test of whether it shifted, the replays that failed, each version's latency;
       for a regressor, the paired difference instead: the mean absolute difference between the two versions'
       answers to the same inputs and the mean difference (the candidate's bias), each with its 95% interval;
       `.run/report/shadow.json`. A shadow whose every replay fails refuses, saying why.
Nothing here touches the stable revision: its figures come from its logs.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import chi2

from iris_tools.google.gcloud import Gcloud
from iris_tools.google.names import suggest_tag
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.invoke import ask
from iris_tools.rollout.cloud_run import CloudRunService, image_of, model_of, name_of, ready, tag_urls
from iris_tools.rollout.split import Split
from iris_tools.local.state import write_atomically
from iris_tools.quality.outcomes import is_number, wilson

def class_shift(confusion: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Stuart-Maxwell test of marginal homogeneity on the paired answers (`confusion[stable][candidate]`): has
    the class mix shifted, given that both versions answered the same inputs? A two-sample chi-square would
    treat the two mixes as independent samples and miss a consistent one-way shift (it gave p = 0.35 where
    this gives 0.0001, on 15 of 300 answers moving one way). With two classes it is McNemar's test. The covariance is inverted by pseudo-inverse,
    its rank the degrees of freedom, so classes that only ever swap with one other still count."""
    classes = sorted(confusion)
    table = np.array([[confusion[a].get(b, 0) for b in classes] for a in classes], dtype=float)
    if len(classes) < 2 or table.sum() == table.trace():
        return {"statistic": 0.0, "p_value": 1.0, "dof": 0, "shifted": False, "test": "Stuart-Maxwell"}
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    difference = (rows - columns)[:-1]
    covariance = -(table + table.T)[:-1, :-1]
    np.fill_diagonal(covariance, (rows + columns - 2 * np.diag(table))[:-1])
    dof = int(np.linalg.matrix_rank(covariance))
    statistic = float(difference @ np.linalg.pinv(covariance) @ difference) if dof else 0.0
    p_value = float(chi2.sf(statistic, dof)) if dof else 1.0
    return {"statistic": round(statistic, 4), "p_value": p_value, "dof": dof, "shifted": bool(p_value < 0.05),
            "test": "Stuart-Maxwell"}


def paired_difference(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """A regressor's two versions on the same inputs: the mean absolute difference of their answers and the mean
    difference (candidate minus stable), each with a 95% interval (normal, from the paired differences' spread)."""
    differences = np.array([candidate - stable for stable, candidate in pairs], dtype=np.float64)
    n = len(differences)

    def mean_ci(values: np.ndarray) -> tuple[float, list[float]]:
        mean = float(values.mean())
        half = 1.959964 * float(values.std(ddof=1)) / np.sqrt(n) if n > 1 else float("inf")
        return round(mean, 6), [round(mean - half, 6), round(mean + half, 6)]

    absolute, absolute_ci = mean_ci(np.abs(differences))
    bias, bias_ci = mean_ci(differences)
    return {"mean_absolute_difference": absolute, "mean_absolute_difference_ci95": absolute_ci,
            "mean_difference": bias, "mean_difference_ci95": bias_ci,
            "largest_absolute_difference": round(float(np.abs(differences).max()), 6)}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(values)
    return {"p50_ms": round(ordered[len(ordered) // 2], 3), "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 3)}


class Shadow:
    def __init__(self, service: CloudRunService, say: Callable[[str], None], limit: int = 500, freshness: str = "1h",
                 concurrency: int = 2) -> None:
        self.service = service
        self.gcloud: Gcloud = service.gcloud
        self.say = say
        self.limit = limit
        self.freshness = freshness
        self.concurrency = concurrency

    def candidate(self, model: str | None, revision: str | None) -> tuple[str, str]:
        """(revision, tag URL) of the candidate, deploying MODEL with no traffic when no ready revision has it."""
        tagged = tag_urls(self.service.describe())
        if revision is None:
            if model is None:
                raise RolloutError("name the candidate: MODEL=<name> or REVISION=<revision>")
            serving = Split.of(self.service.describe())
            idle = [r for r in self.service.revisions() if model_of(image_of(r) or "") == model and ready(r)
                    and not serving.percent(name_of(r))]
            if idle:
                revision = max(idle, key=lambda r: r["metadata"].get("creationTimestamp", ""))["metadata"]["name"]
            else:
                revision = self.service.deploy(model, f"{self.service.settings.image}:{model}", self.say)
                tagged = tag_urls(self.service.describe())
        if revision not in tagged:
            self.service.tag(revision, "shadow-" + suggest_tag(revision)[-30:].strip("-"))
            tagged = tag_urls(self.service.describe())
        return revision, tagged[revision]

    def stable_log(self, stable: str) -> list[dict[str, Any]]:
        """The stable revision's recent prediction log lines, newest first."""
        query = (f'resource.type="cloud_run_revision" AND resource.labels.revision_name="{stable}" '
                 f'AND jsonPayload.kind="prediction"')
        return self.gcloud.json("logging", "read", query, f"--limit={self.limit}", f"--freshness={self.freshness}")

    def run(self, model: str | None, revision: str | None, report_path: Path) -> dict[str, Any]:
        stable = Split.of(self.service.describe()).largest()
        if stable is None:
            raise RolloutError(f"service {self.service.name} serves no revision: nothing to replay")
        candidate, url = self.candidate(model, revision)
        if candidate == stable:
            raise RolloutError(f"{candidate} is the stable revision itself")
        entries = self.stable_log(stable)
        inputs, stable_answers, stable_latency = [], [], []
        for entry in entries:
            payload = entry.get("jsonPayload", {})
            for row, answer in zip(payload.get("inputs", []), payload.get("predictions", [])):
                inputs.append(row)
                stable_answers.append(answer)
            if payload.get("rows") == 1 and payload.get("latency_ms") is not None:
                stable_latency.append(float(payload["latency_ms"]))
        inputs, stable_answers = inputs[: self.limit], stable_answers[: self.limit]
        if not inputs:
            raise RolloutError(f"no prediction logs of {stable} in the last {self.freshness}: the shadow replays what "
                               f"users asked the stable revision (LOG_PREDICTIONS must be above 0)")
        self.say(f"shadow: {len(inputs)} inputs {stable} answered recently, replayed to {candidate} at {url} ...")
        token = self.gcloud.identity_token() or None  # the candidate may be private
        started = time.monotonic()
        with ThreadPoolExecutor(self.concurrency) as pool:
            replies = [(answer, server_ms, error) for answer, server_ms, _, error
                       in pool.map(lambda row: ask(url, row, token, "shadow"), inputs)]
        failures = [error for _, _, error in replies if error]
        pairs = [(s, c) for s, (c, _, error) in zip(stable_answers, replies) if not error and c is not None]
        if not pairs:
            raise RolloutError(f"shadow: every one of the {len(inputs)} replays to {candidate} at {url} failed, so "
                               f"nothing can be compared; the first: {failures[0] if failures else 'no answer'}")
        n = len(pairs)
        common = {
            "service": self.service.name, "target": self.gcloud.target, "stable": stable,
            "candidate": candidate, "candidate_url": url, "n": n, "failed_requests": len(failures),
            "latency": {"stable": percentiles(stable_latency),
                        "candidate": percentiles([d for _, d, error in replies if not error and d is not None])},
            "latency_measure": "server-side handler time: the stable's from its logs, the candidate's from Server-Timing",
            "seconds": round(time.monotonic() - started, 2), "replayed": len(inputs)}
        if all(is_number(value) for pair in pairs for value in pair):
            report = {**common, "task": "regressor", **paired_difference(pairs),
                      "largest_differences": sorted(
                          ({"input": row, "stable": s, "candidate": c} for row, s, (c, _, error)
                           in zip(inputs, stable_answers, replies) if not error and c is not None),
                          key=lambda item: -abs(item["candidate"] - item["stable"]))[:50]}
            write_atomically(report_path, json.dumps(report, indent=1))
            self._report_regression(report, report_path)
            return report
        classes = sorted({s for s, _ in pairs} | {c for _, c in pairs})
        agree = sum(s == c for s, c in pairs)
        stable_mix = {c: sum(s == c for s, _ in pairs) for c in classes}
        candidate_mix = {c: sum(x == c for _, x in pairs) for c in classes}
        report = {
            **common, "task": "classifier", "agreement": round(agree / n, 4) if n else None,
            "agreement_ci95": [round(v, 4) for v in wilson(agree, n)], "classes": classes,
            "confusion": {s: {c: sum(1 for a, b in pairs if a == s and b == c) for c in classes} for s in classes},
            "class_mix": {"stable": stable_mix, "candidate": candidate_mix},
            "disagreements": [{"input": row, "stable": s, "candidate": c}
                              for row, s, (c, _, error) in zip(inputs, stable_answers, replies)
                              if not error and c != s][:50],
        }
        report["class_shift"] = class_shift(report["confusion"])
        write_atomically(report_path, json.dumps(report, indent=1))
        self._report(report, report_path)
        return report

    def _report_regression(self, report: dict[str, Any], path: Path) -> None:
        low, high = report["mean_absolute_difference_ci95"]
        bias_low, bias_high = report["mean_difference_ci95"]
        self.say(f"mean absolute difference {report['mean_absolute_difference']:.6g} over {report['n']} inputs (95% CI "
                 f"{low:.6g} to {high:.6g}); mean difference (candidate - stable) {report['mean_difference']:.6g} "
                 f"(95% CI {bias_low:.6g} to {bias_high:.6g}); largest {report['largest_absolute_difference']:.6g}; "
                 f"{report['failed_requests']} of {report['replayed']} replays failed")
        latency = report["latency"]
        self.say(f"latency (handler): stable p50 {latency['stable']['p50_ms']} ms p99 {latency['stable']['p99_ms']} ms; "
                 f"candidate p50 {latency['candidate']['p50_ms']} ms p99 {latency['candidate']['p99_ms']} ms")
        self.say(f"wrote {path}")

    def _report(self, report: dict[str, Any], path: Path) -> None:
        low, high = report["agreement_ci95"]
        self.say(f"agreement {100 * report['agreement']:.1f}% of {report['n']} inputs (95% CI {100 * low:.1f}% to "
              f"{100 * high:.1f}%); {report['failed_requests']} of {report['replayed']} replays failed")
        classes = report["classes"]
        width = max(len(c) for c in classes + ["stable \\ candidate"]) + 2
        self.say("stable \\ candidate".ljust(width) + "".join(c.ljust(width) for c in classes))
        for s in classes:
            self.say(s.ljust(width) + "".join(str(report["confusion"][s][c]).ljust(width) for c in classes))
        shift = report["class_shift"]
        self.say("class mix: stable " + ", ".join(f"{c} {n}" for c, n in report["class_mix"]["stable"].items())
              + "; candidate " + ", ".join(f"{c} {n}" for c, n in report["class_mix"]["candidate"].items())
              + f"; paired Stuart-Maxwell test {shift['statistic']:.2f} on {shift['dof']} dof, "
                f"p = {shift['p_value']:.3g}: "
              + ("the mix shifted" if shift["shifted"] else "no significant shift"))
        latency = report["latency"]
        self.say(f"latency (handler): stable p50 {latency['stable']['p50_ms']} ms p99 {latency['stable']['p99_ms']} ms; "
              f"candidate p50 {latency['candidate']['p50_ms']} ms p99 {latency['candidate']['p99_ms']} ms")
        self.say(f"wrote {path}")

