"""Predictions joined to labels by answer id, per revision. Pure: plain values in, figures out.

Only an answer that predicted one row has an id of its own (`GET /`, a one-row V2 inference); batch answers are
counted in the mix but never joined. A label for an id no prediction carries is counted as unmatched.

A regressor's predictions and labels are numbers: each revision keeps its absolute errors' sum and sum of squares
(its mean absolute error and that mean's variance), and its predicted values (their distribution, for the gate's
two-sample test) instead of a class mix.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import chi2_contingency

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) with no trials."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Prediction:
    id: str | None  # None: a batch's rows, counted in the mix only
    revision: str
    predicted: str | float  # a class name; a regressor's number
    at: float


@dataclass(frozen=True)
class TrueLabel:
    id: str
    label: str | float  # a class name; a regressor's true value
    at: float | None = None  # when it came back (None: read from a file)


def is_number(value: object) -> bool:
    """A regressor's answer or label (a class name is a string; a boolean is neither)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class RevisionOutcome:
    revision: str
    predictions: int = 0
    joinable: int = 0  # predictions with an id of their own
    labelled: int = 0
    correct: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # true label -> predicted -> count
    mix: dict[str, int] = field(default_factory=dict)  # predicted class -> count (every prediction)
    delays_s: list[float] = field(default_factory=list)
    error_sum: float = 0.0  # a regressor: the sum of |prediction - label| over the labelled predictions
    error_squares: float = 0.0  # and of its squares
    values: list[float] = field(default_factory=list)  # a regressor: every predicted value

    @property
    def regression(self) -> bool:
        return bool(self.values) and not self.mix

    @property
    def mae(self) -> float | None:
        """A regressor's mean absolute error over its labelled predictions."""
        return self.error_sum / self.labelled if self.labelled else None

    @property
    def mae_variance(self) -> float | None:
        """The variance of one absolute error (population), for the mean's standard error."""
        if not self.labelled:
            return None
        mean = self.error_sum / self.labelled
        return max(0.0, self.error_squares / self.labelled - mean * mean)

    def value_quantiles(self) -> dict[str, float]:
        """A regressor's predicted values at their 10th, 50th and 90th percentiles."""
        values = sorted(self.values)
        return {f"p{q}": values[int(q / 100 * (len(values) - 1))] for q in (10, 50, 90)} if values else {}

    def mae_interval(self, z: float = Z95) -> tuple[float, float] | None:
        if self.labelled < 2:
            return None
        half = z * math.sqrt(self.mae_variance * self.labelled / (self.labelled - 1) / self.labelled)
        return max(0.0, self.mae - half), self.mae + half

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.labelled)

    @property
    def coverage(self) -> float | None:
        return self.labelled / self.joinable if self.joinable else None

    def recall(self) -> dict[str, float | None]:
        return {truth: (row.get(truth, 0) / sum(row.values()) if sum(row.values()) else None)
                for truth, row in sorted(self.confusion.items())}

    def delay(self) -> dict[str, float | None]:
        if not self.delays_s:
            return {"p50_s": None, "p90_s": None}
        ordered = sorted(self.delays_s)
        return {"p50_s": round(statistics.median(ordered), 3), "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 3)}

    def as_json(self) -> dict[str, Any]:
        if self.regression:
            interval = self.mae_interval()
            return {"revision": self.revision, "task": "regressor", "predictions": self.predictions,
                    "joinable": self.joinable, "labelled": self.labelled, "coverage": self.coverage,
                    "mae": self.mae, "mae_ci95": None if interval is None else [round(v, 6) for v in interval],
                    "prediction_quantiles": self.value_quantiles(),
                    "label_delay": self.delay()}
        low, high = self.interval
        return {"revision": self.revision, "predictions": self.predictions, "joinable": self.joinable,
                "labelled": self.labelled, "coverage": self.coverage, "correct": self.correct,
                "accuracy": self.accuracy, "accuracy_ci95": [round(low, 4), round(high, 4)],
                "recall": self.recall(), "confusion": self.confusion, "mix": dict(sorted(self.mix.items())),
                "label_delay": self.delay()}


@dataclass
class Outcomes:
    revisions: dict[str, RevisionOutcome]
    labels: int  # labels read
    unmatched: int  # labels whose id no prediction carries

    def as_json(self) -> dict[str, Any]:
        return {"revisions": {name: outcome.as_json() for name, outcome in self.revisions.items()},
                "labels": self.labels, "unmatched": self.unmatched}


def join(predictions: Iterable[Prediction], labels: Sequence[TrueLabel]) -> Outcomes:
    """Each revision's predictions, and those whose id has a label, judged against it. A label given twice for one
    id counts once (the last one given)."""
    by_id = {label.id: label for label in labels}
    found: dict[str, RevisionOutcome] = {}
    matched: set[str] = set()
    for prediction in predictions:
        outcome = found.setdefault(prediction.revision, RevisionOutcome(prediction.revision))
        outcome.predictions += 1
        numeric = is_number(prediction.predicted)
        if numeric:
            outcome.values.append(float(prediction.predicted))
        else:
            outcome.mix[prediction.predicted] = outcome.mix.get(prediction.predicted, 0) + 1
        if prediction.id is None:
            continue
        outcome.joinable += 1
        label = by_id.get(prediction.id)
        if label is None:
            continue
        truth = label.label
        if numeric and isinstance(truth, str):  # a regressor's label read from a CSV file
            try:
                truth = float(truth)
            except ValueError:
                continue
        if numeric != is_number(truth) or (numeric and not math.isfinite(truth)):
            continue  # a class name for a regressor's answer (or the reverse): not this model's label
        matched.add(prediction.id)
        outcome.labelled += 1
        if numeric:
            error = abs(float(prediction.predicted) - float(truth))
            outcome.error_sum += error
            outcome.error_squares += error * error
        else:
            outcome.correct += truth == prediction.predicted
            row = outcome.confusion.setdefault(truth, {})
            row[prediction.predicted] = row.get(prediction.predicted, 0) + 1
        if label.at is not None:
            outcome.delays_s.append(max(0.0, label.at - prediction.at))
    return Outcomes(dict(sorted(found.items())), len(by_id), len(set(by_id) - matched))


@dataclass(frozen=True)
class MixShift:
    """How far two revisions' prediction mixes are apart (total variation distance), and whether that is more than
    chance (a chi-square test of homogeneity on the class counts: valid because a split assigns requests at
    random, so both revisions see the same inputs in distribution)."""

    distance: float
    statistic: float
    p_value: float
    dof: int

    def as_json(self) -> dict[str, Any]:
        return {"total_variation": round(self.distance, 4), "statistic": round(self.statistic, 4),
                "p_value": self.p_value, "dof": self.dof, "test": "chi-square, two samples"}


@dataclass(frozen=True)
class ValueShift:
    """How far two revisions' predicted values are apart in distribution: the two-sample Kolmogorov-Smirnov
    distance (the largest gap between their empirical distribution functions) and its p-value."""

    distance: float
    p_value: float

    def as_json(self) -> dict[str, Any]:
        return {"ks_distance": round(self.distance, 4), "p_value": self.p_value,
                "test": "Kolmogorov-Smirnov, two samples"}


def value_shift(a: Sequence[float], b: Sequence[float]) -> ValueShift | None:
    """None when either revision has no predicted value."""
    if not a or not b:
        return None
    from scipy.stats import ks_2samp

    result = ks_2samp(a, b)
    return ValueShift(float(result.statistic), float(result.pvalue))


def mix_shift(a: dict[str, int], b: dict[str, int]) -> MixShift | None:
    """None when either revision has no predictions."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return None
    classes = sorted(set(a) | set(b))
    distance = 0.5 * sum(abs(a.get(c, 0) / total_a - b.get(c, 0) / total_b) for c in classes)
    table = [[a.get(c, 0) for c in classes], [b.get(c, 0) for c in classes]]
    if len(classes) < 2:
        return MixShift(distance, 0.0, 1.0, 0)
    statistic, p_value, dof, _ = chi2_contingency(table, correction=False)
    return MixShift(distance, float(statistic), float(p_value), int(dof))

