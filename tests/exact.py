"""scikit-learn's linear decisions in exact arithmetic: what a prediction is when nothing is rounded.

Every float is an integer times a power of two, so a sum of products of floats is an exact integer
once each factor is scaled by a large enough power of two. The decision values come back as
integers at one scale per row (only their signs and order matter), far faster than Fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from sklearn.svm import SVC


def _shift(value: float) -> int:
    """k such that value * 2**k is an integer."""
    return value.as_integer_ratio()[1].bit_length() - 1


def _scaled(value: float, shift: int) -> int:
    numerator, denominator = value.as_integer_ratio()
    return numerator << (shift - (denominator.bit_length() - 1))


class ExactLinear:
    """A fitted SVC(kernel="linear") (libsvm's own arrays) or linear one-vs-rest classifier, evaluated exactly."""

    def __init__(self, estimator: object) -> None:
        self.ovo = isinstance(estimator, SVC)
        self.n_classes = len(estimator.classes_)
        if self.ovo:
            vectors = estimator.support_vectors_.tolist()
            dual = estimator._dual_coef_.tolist()
            counts = [int(c) for c in estimator._n_support]
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
            numbers = [v for row in vectors for v in row] + [v for row in dual for v in row] + \
                estimator._intercept_.tolist()
            self.shift = max(_shift(float(v)) for v in numbers)
            self.vectors = [[_scaled(v, self.shift) for v in row] for row in vectors]
            self.pairs, self.terms, self.intercepts = [], [], []
            p = 0
            for i in range(self.n_classes):
                for j in range(i + 1, self.n_classes):
                    terms = [(_scaled(dual[j - 1][k], self.shift), k) for k in range(starts[i], starts[i] + counts[i])]
                    terms += [(_scaled(dual[i][k], self.shift), k) for k in range(starts[j], starts[j] + counts[j])]
                    self.pairs.append((i, j))
                    self.terms.append(terms)
                    self.intercepts.append(_scaled(float(estimator._intercept_[p]), self.shift))
                    p += 1
        else:
            numbers = [float(v) for v in np.ravel(estimator.coef_)] + [float(v) for v in np.ravel(estimator.intercept_)]
            self.shift = max(_shift(v) for v in numbers)
            self.weights = [[_scaled(float(w), self.shift) for w in row] for row in estimator.coef_]
            self.intercepts = [_scaled(float(b), self.shift) for b in np.broadcast_to(estimator.intercept_,
                                                                                       (len(self.weights),))]

    def _scaled_decisions(self, x: Sequence[float]) -> tuple[list[int], int]:
        """(decision values at x times 2**k, k): ovo pairs (libsvm's order and sign) or ovr scores."""
        row_shift = max(_shift(float(v)) for v in x)
        point = [_scaled(float(v), row_shift) for v in x]
        if self.ovo:
            kernel = [sum(a * b for a, b in zip(vector, point)) for vector in self.vectors]  # scale s + r
            return [sum(coef * kernel[k] for coef, k in terms) + (intercept << (self.shift + row_shift))
                    for terms, intercept in zip(self.terms, self.intercepts)], 2 * self.shift + row_shift
        return [sum(w * v for w, v in zip(row, point)) + (b << row_shift)
                for row, b in zip(self.weights, self.intercepts)], self.shift + row_shift

    def decisions(self, x: Sequence[float]) -> list[int]:
        """The decision values at x, exactly, all at one scale (their signs and order are the decisions')."""
        return self._scaled_decisions(x)[0]

    def fractions(self, x: Sequence[float]) -> list[Fraction]:
        """The decision values at x as exact rationals."""
        values, exponent = self._scaled_decisions(x)
        return [Fraction(value, 1 << exponent) for value in values]

    def predict_one(self, x: Sequence[float]) -> int:
        """The class index scikit-learn would answer if it rounded nothing (first class on a tie, as it does)."""
        values = self.decisions(x)
        if self.ovo:
            votes = [0] * self.n_classes
            for (i, j), value in zip(self.pairs, values):
                votes[i if value > 0 else j] += 1
            return votes.index(max(votes))
        if len(values) == 1:
            return int(values[0] > 0)
        return max(range(len(values)), key=lambda c: (values[c], -c))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.predict_one(row) for row in rows.tolist()], dtype=np.intp)


def first_differences(actual: np.ndarray, expected: np.ndarray, rows: np.ndarray, limit: int = 5) -> str:
    """'' when equal; otherwise how many rows differ and the first few, as (row, actual, expected)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"shapes differ: {actual.shape} vs {expected.shape}"
    differ = np.flatnonzero(actual != expected)
    if not len(differ):
        return ""
    shown = "; ".join(f"row {int(i)} {rows[i].tolist()}: {actual[i]!r} vs {expected[i]!r}" for i in differ[:limit])
    return f"{len(differ)} of {len(actual)} rows differ, the first: {shown}"
