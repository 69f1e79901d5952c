"""Each revision's outcomes (predictions joined to labels by answer id), as the aggregate query returns them
(quality/aggregate.py), and the tests that compare two revisions. Pure: figures in, figures out.

Only an answer that predicted one row has an id of its own (`GET /`, a one-row V2 inference); batch answers are
counted in the mix but never joined. A label for an id no prediction carries is counted as unmatched.

A regressor's predictions and labels are numbers: each revision keeps its absolute errors' sum and sum of squares
(its mean absolute error and that mean's variance), and a sketch of its predicted values (101 quantiles: their
distribution, for the gate's two-sample test) instead of a class mix.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
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
    delay_sketch: list[float] | None = None  # the label delay's 0th, 10th, ..., 100th percentiles (seconds)
    error_sum: float = 0.0  # a regressor: the sum of |prediction - label| over the labelled predictions
    error_squares: float = 0.0  # and of its squares
    sketch: list[float] | None = None  # a regressor: its predicted values' 0th, 1st, ..., 100th percentiles
    values_count: int = 0  # and how many values the sketch summarises
    # Calibration, over the labelled answers whose client asked for probabilities (the log keeps the top class's):
    # per tenth of confidence (0 = [0, 0.1), ..., 9 = [0.9, 1]) [answers, right, sum of confidence]; and the sum of
    # (confidence - right)^2, the top-class Brier score's numerator.
    bins: dict[int, list[float]] = field(default_factory=dict)
    brier_sum: float = 0.0

    @classmethod
    def sketch_of(cls, values: Sequence[float]) -> list[float]:
        """The 101 quantiles a sketch holds, computed exactly (for figures made in memory)."""
        import numpy as np

        return np.quantile(np.asarray(values, dtype=float), np.linspace(0.0, 1.0, 101)).tolist()

    @property
    def regression(self) -> bool:
        return bool(self.values_count) and not self.mix

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
        return {f"p{q}": self.sketch[q] for q in (10, 50, 90)} if self.sketch else {}

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
        if not self.delay_sketch:
            return {"p50_s": None, "p90_s": None}
        return {"p50_s": round(self.delay_sketch[5], 3), "p90_s": round(self.delay_sketch[9], 3)}

    @property
    def calibrated(self) -> int:
        """Labelled answers that carry their top class's probability."""
        return int(sum(answers for answers, _, _ in self.bins.values()))

    @property
    def brier(self) -> float | None:
        """The top-class Brier score: mean (probability given to the class answered - 1 if it was right, else 0)^2.
        0 is a model sure exactly when it is right; a model as right as another but less sure scores higher."""
        return self.brier_sum / self.calibrated if self.calibrated else None

    def reliability(self) -> list[dict[str, Any]]:
        """Per tenth of confidence with answers in it: how sure the model said it was, and how often it was right."""
        return [{"bin": [bin / 10, (bin + 1) / 10], "answers": int(answers), "confidence": round(total / answers, 4),
                 "accuracy": round(right / answers, 4)}
                for bin, (answers, right, total) in sorted(self.bins.items()) if answers]

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
                "label_delay": self.delay(),
                "calibration": {"answers": self.calibrated, "brier": None if self.brier is None else round(self.brier, 6),
                                "reliability": self.reliability()}}


@dataclass
class Outcomes:
    revisions: dict[str, RevisionOutcome]
    labels: int  # labels read
    unmatched: int  # answers labelled whose id no prediction carries
    conflicts: int = 0  # labels for an answer already labelled: counted, never judged (its first label counts)

    def as_json(self) -> dict[str, Any]:
        return {"revisions": {name: outcome.as_json() for name, outcome in self.revisions.items()},
                "labels": self.labels, "unmatched": self.unmatched, "conflicts": self.conflicts}


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


def value_shift(a: RevisionOutcome, b: RevisionOutcome) -> ValueShift | None:
    """The Kolmogorov-Smirnov distance of two revisions' predicted values, read from their sketches (within about
    one percentile of the exact one), with its asymptotic p-value for the numbers of values the sketches summarise.
    None when either has no predicted value."""
    if not (a.sketch and b.sketch and a.values_count and b.values_count):
        return None
    from scipy.stats import kstwobign

    points = sorted(set(a.sketch) | set(b.sketch))
    distance = max(abs(_cdf(a.sketch, x) - _cdf(b.sketch, x)) for x in points)
    effective = a.values_count * b.values_count / (a.values_count + b.values_count)
    return ValueShift(distance, float(kstwobign.sf(distance * math.sqrt(effective))))


def _cdf(sketch: Sequence[float], x: float) -> float:
    """The share of values at or below x, by a sketch's 101 quantiles (linear between them)."""
    if x < sketch[0]:
        return 0.0
    if x >= sketch[-1]:
        return 1.0
    index = bisect.bisect_right(sketch, x)  # sketch[index - 1] <= x < sketch[index]
    low, high = sketch[index - 1], sketch[index]
    return (index - 1 + ((x - low) / (high - low) if high > low else 0.0)) / (len(sketch) - 1)


LABEL_SHARE_ALPHA = 0.001  # the sample-ratio check's level: A/B platforms hold a comparison below 0.001 or 0.0005


@dataclass(frozen=True)
class LabelShare:
    """The share of each revision's labellable answers that got a label, and whether they differ more than chance
    allows (a chi-square test on labelled / not labelled x candidate / stable: a sample-ratio check). A split assigns
    requests at random and an honest label pipeline labels them whoever answered, so the shares agree up to chance;
    labels that reach one side more than the other are a sign of a broken or gamed pipeline."""

    candidate: float
    stable: float
    statistic: float
    p_value: float

    @property
    def mismatched(self) -> bool:
        return self.p_value < LABEL_SHARE_ALPHA

    def as_json(self) -> dict[str, Any]:
        return {"candidate": round(self.candidate, 4), "stable": round(self.stable, 4),
                "statistic": round(self.statistic, 4), "p_value": self.p_value, "mismatched": self.mismatched,
                "alpha": LABEL_SHARE_ALPHA, "test": "chi-square, labelled share"}


def label_share(candidate: "RevisionOutcome", stable: "RevisionOutcome") -> LabelShare | None:
    """None while either side has no answer a label could name."""
    if not candidate.joinable or not stable.joinable:
        return None
    table = [[candidate.labelled, candidate.joinable - candidate.labelled],
             [stable.labelled, stable.joinable - stable.labelled]]
    shares = candidate.labelled / candidate.joinable, stable.labelled / stable.joinable
    if not (candidate.labelled + stable.labelled) or all(row[1] == 0 for row in table):
        return LabelShare(*shares, 0.0, 1.0)  # none labelled, or all: nothing to tell apart
    statistic, p_value, _, _ = chi2_contingency(table, correction=False)
    return LabelShare(*shares, float(statistic), float(p_value))


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

