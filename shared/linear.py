"""Linear decision rules as plain numbers: scikit-learn's predictions without importing it.

`export(estimator)` turns a fitted linear classifier into JSON-safe numbers at
training time; `LinearRule` evaluates them at serving time with numpy (batches)
or plain floats (one row). Both also compute a rigorous bound on the rounding
error of any ordinary evaluation of the same sums, scikit-learn's own included
(BLAS with or without FMA, libsvm's loops). A row whose decision is further from
a tie than those bounds gets the answer scikit-learn gives; a row that is not
(a point within about 1e-11 of a decision boundary) is reported as uncertain, and
the caller asks scikit-learn itself.

Two kinds:
  "ovr"  one score per class, the largest wins (LinearSVC, LogisticRegression, ...);
         with one score (binary) the second class wins where it is > 0.
  "ovo"  libsvm's one-vs-one vote of SVC(kernel="linear"): one decision per class
         pair (i, j), a vote for i where it is > 0, else for j; most votes wins, the
         first class on a tie.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNIT_ROUNDOFF = 2.0**-53
SAFETY = 4.0

# The error budget. A decision value d(x) (ovo: one pair's; ovr: one class's score) is a sum of
# products. Higham's bound for a float inner product of n terms, in any order, with or without
# FMA, is |fl(sum) - sum| <= gamma_n * sum(|terms|), gamma_n = n*u/(1-n*u), u = 2**-53. So:
#
#   ovr   d = w.x + b: F products and one addition, n = F + 1 (+1 below). scikit-learn computes the
#         same sum (BLAS, any order): its error is within the same gamma_n * (|w|.|x| + |b|).
#   ovo   libsvm's d = sum_k a_k (sv_k . x) - rho: K support vectors of F features, so n <= K + F + 1.
#         Ours evaluates w = sum_k a_k sv_k (rounded once, at export) then w.x + b; the exact w differs
#         by at most gamma_K * sum_k |a_k||sv_k| (the exported `magnitudes`), so ours is within
#         gamma_(K+F+1) * (magnitudes.|x| + |b|) of the exact d, and so is libsvm's own loop.
#
# n gets one more term (K + F + 2, or F + 2) for the final addition of the intercept. Each row's
# bound is gamma_n times those magnitudes, times SAFETY = 4 = 2 x 2:
#   x2  two evaluations must both be right, ours and scikit-learn's: if |ours| > E_ours + E_sklearn,
#       then the exact value and scikit-learn's value both have the sign ours has;
#   x2  headroom for what the textbook bound leaves out: the bound is itself computed in floats,
#       and ovr compares the difference of two scores (one more rounding, covered because the
#       slack adds both scores' bounds).
# A row is called only when every decision it rests on clears its bound; the rest go to
# scikit-learn itself. tests/integration/test_rounding_bound.py places points at 0.001x to 2x these
# bounds and checks every decided one against exact rational arithmetic and against scikit-learn.


def _gamma(n: int) -> float:
    """SAFETY x the textbook gamma_n; see the error budget above."""
    return SAFETY * n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def export(estimator: Any) -> dict[str, Any] | None:
    """The decision rule of a fitted classifier as JSON-safe numbers, or None if it is not linear."""
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.svm import SVC

    classes = np.asarray(estimator.classes_)
    if isinstance(estimator, SVC):
        if estimator.kernel != "linear" or estimator.break_ties:
            return None
        return _export_ovo(estimator, len(classes))
    if isinstance(estimator, LinearClassifierMixin) and hasattr(estimator, "coef_"):
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.broadcast_to(np.asarray(estimator.intercept_, dtype=np.float64), (coef.shape[0],))
        return {"kind": "ovr", "n_classes": len(classes), "weights": coef.tolist(), "intercepts": intercept.tolist()}
    return None


def _export_ovo(svc: Any, n_classes: int) -> dict[str, Any]:
    # libsvm's own arrays, as scikit-learn hands them to libsvm's predict: support vectors
    # grouped by class, _dual_coef_[j-1] for class i's vectors in pair (i, j) and
    # _dual_coef_[i] for class j's, and _intercept_[p] = -rho[p].
    vectors = np.asarray(svc.support_vectors_, dtype=np.float64)
    dual = np.asarray(svc._dual_coef_, dtype=np.float64)
    counts = np.asarray(svc._n_support)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pairs, weights, magnitudes, intercepts, sizes = [], [], [], [], []
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            rows_i = slice(starts[i], starts[i] + counts[i])
            rows_j = slice(starts[j], starts[j] + counts[j])
            coef = np.concatenate([dual[j - 1, rows_i], dual[i, rows_j]])
            used = np.concatenate([vectors[rows_i], vectors[rows_j]])
            pairs.append([i, j])
            weights.append((coef @ used).tolist())
            magnitudes.append((np.abs(coef) @ np.abs(used)).tolist())
            intercepts.append(float(svc._intercept_[p]))
            sizes.append(int(counts[i] + counts[j]))
            p += 1
    return {"kind": "ovo", "n_classes": n_classes, "pairs": pairs, "weights": weights, "intercepts": intercepts,
            "magnitudes": magnitudes, "support_sizes": sizes}


class LinearRule:
    """Evaluates an exported rule; `None` / `False` mark rows too close to a tie to call."""

    def __init__(self, rule: dict[str, Any], n_features: int) -> None:
        self.kind = rule["kind"]
        if self.kind not in ("ovr", "ovo"):
            raise ValueError(f"unknown linear rule kind {self.kind!r}")
        self.n_classes = int(rule["n_classes"])
        self.weights = np.array(rule["weights"], dtype=np.float64)
        self.intercepts = np.array(rule["intercepts"], dtype=np.float64)
        if self.weights.ndim != 2 or self.weights.shape[1] != n_features or len(self.intercepts) != len(self.weights):
            raise ValueError(f"rule of shape {self.weights.shape} does not fit {n_features} features")
        if self.kind == "ovo":
            self.pairs = np.array(rule["pairs"], dtype=np.intp)
            magnitudes = np.array(rule["magnitudes"], dtype=np.float64)
            gammas = np.array([_gamma(size + n_features + 2) for size in rule["support_sizes"]])
        else:
            magnitudes = np.abs(self.weights)
            gammas = np.full(len(self.weights), _gamma(n_features + 2))
        self._scaled_magnitudes = magnitudes * gammas[:, None]
        self._scaled_intercepts = np.abs(self.intercepts) * gammas
        # Plain-float copies for the one-row path: no numpy call per request.
        self._rows_py = [(tuple(w), float(b), tuple(m), float(e)) for w, b, m, e in zip(
            self.weights.tolist(), self.intercepts.tolist(), self._scaled_magnitudes.tolist(),
            self._scaled_intercepts.tolist())]
        self._pairs_py = [tuple(pair) for pair in rule["pairs"]] if self.kind == "ovo" else []

    # ------------------------------------------------------------ batches

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index per row, whether that row is certain)."""
        scores = X @ self.weights.T + self.intercepts
        bounds = np.abs(X) @ self._scaled_magnitudes.T + self._scaled_intercepts
        if self.kind == "ovo":
            return self._vote(scores, bounds)
        if scores.shape[1] == 1:
            return (scores[:, 0] > 0).astype(np.intp), np.abs(scores[:, 0]) > bounds[:, 0]
        top = scores.argmax(axis=1)
        rows = np.arange(len(X))
        gaps = scores[rows, top][:, None] - scores
        slack = bounds[rows, top][:, None] + bounds
        gaps[rows, top] = np.inf
        return top, (gaps > slack).all(axis=1)

    def _vote(self, decisions: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first_wins = decisions > 0
        votes = np.zeros((len(decisions), self.n_classes), dtype=np.intp)
        for p, (i, j) in enumerate(self._pairs_py):
            votes[:, i] += first_wins[:, p]
            votes[:, j] += ~first_wins[:, p]
        return votes.argmax(axis=1), (np.abs(decisions) > bounds).all(axis=1)

    # ------------------------------------------------------------ one row, plain floats

    def predict_one(self, x: tuple[float, ...]) -> int | None:
        """The class index of one row, or None when it is too close to a tie to call."""
        magnitude = tuple(abs(v) for v in x)
        values = []
        for weights, intercept, scaled, scaled_intercept in self._rows_py:
            score = intercept
            bound = scaled_intercept
            for value, weight, size, scale in zip(x, weights, magnitude, scaled):
                score += value * weight
                bound += size * scale
            values.append((score, bound))
        if self.kind == "ovo":
            votes = [0] * self.n_classes
            for (i, j), (decision, bound) in zip(self._pairs_py, values):
                if not abs(decision) > bound:
                    return None
                votes[i if decision > 0 else j] += 1
            return votes.index(max(votes))
        if len(values) == 1:
            score, bound = values[0]
            return int(score > 0) if abs(score) > bound else None
        top = max(range(len(values)), key=lambda c: values[c][0])
        top_score, top_bound = values[top]
        for c, (score, bound) in enumerate(values):
            if c != top and not top_score - score > top_bound + bound:
                return None
        return top
