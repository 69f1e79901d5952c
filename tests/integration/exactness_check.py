"""The serving path's promise near a tie, checked on one model folder; run as a program so that a test
can run it under each OpenBLAS setting (OpenBLAS reads OPENBLAS_CORETYPE once, when it loads).

    python -m tests.integration.exactness_check functions/lin_svc     -> one JSON object on stdout

The promise:
  - a row whose decisions clear the rounding bound (the rule calls it) gets the exact answer: the one
    exact rational arithmetic gives, which every ordinary evaluation (scikit-learn's included) gives too;
  - a row within the bound (a near tie) gets scikit-learn's own answer for the same call: one row
    (GET /) is asked of scikit-learn as one row; a batch with any such row is asked of it whole.
Near a tie, scikit-learn's answer can depend on the call: with some BLAS kernels, the same point is
answered differently in a batch than alone. Only the call's own answer is well defined, so that is
what the check compares with.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import joblib
import numpy as np

from shared.model import ServedModel
from tests.exact import ExactLinear, first_differences

REQUEST_ROWS = 10_000


def boundary_points(model: ServedModel, per_line: int, rng: np.random.Generator) -> np.ndarray:
    """Points on each decision line of the rule, nudged by a few ulps either way."""
    rule = model.rule
    W, b = rule.weights, rule.intercepts
    if rule.kind == "ovo":
        lines = list(zip(W, b))
    else:
        lines = [(W[c] - W[d], b[c] - b[d]) for c in range(len(W)) for d in range(c + 1, len(W))]
    points = []
    for w, c in lines:
        x0 = rng.uniform(3.0, 9.0, per_line)
        x1 = -(c + w[0] * x0) / w[1]
        x1 = x1 + rng.integers(-4, 5, per_line) * np.spacing(x1)
        points.append(np.column_stack([x0, x1]))
    return np.vstack(points)


def near_tie_rows(model: ServedModel) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.vstack([boundary_points(model, 2_000, rng),
                      np.column_stack([rng.uniform(3.0, 9.0, 5_000), rng.uniform(1.5, 5.0, 5_000)])])


def check(directory: Path) -> dict[str, object]:
    model = ServedModel.load(directory, directory.name)
    estimator = joblib.load(directory / "model.joblib")
    exact = ExactLinear(estimator)
    rows = near_tie_rows(model)
    names = np.array(model.manifest.class_names, dtype=object)
    exact_indices = exact.predict(rows)

    # One row at a time: GET /.
    called = [model.rule.predict_one(tuple(row)) for row in rows.tolist()]
    certain = np.array([index is not None for index in called])
    served = np.array([model.predict_one(tuple(row)) for row in rows.tolist()], dtype=object)
    sklearn_alone = np.array([names[estimator.predict(row[None, :])[0]] for row in rows[~certain]], dtype=object)
    failures = {
        "one row, beyond the bound, vs exact": first_differences(served[certain], names[exact_indices[certain]],
                                                                 rows[certain]),
        "one row, within the bound, vs scikit-learn alone": first_differences(served[~certain], sklearn_alone,
                                                                              rows[~certain]),
    }

    # Batches: small ones take the plain-float path, large ones numpy's.
    paths = {"exact": 0, "scikit-learn": 0}
    wrong_batches = []
    for size in (5, REQUEST_ROWS):
        for start in range(0, len(rows), size):
            batch = rows[start:start + size]
            _, batch_certain = model.rule.predict(batch)
            all_called = (all(model.rule.predict_one(tuple(row)) is not None for row in batch.tolist())
                          if size <= 8 else bool(batch_certain.all()))
            expected = exact_indices[start:start + size] if all_called else estimator.predict(batch)
            paths["exact" if all_called else "scikit-learn"] += 1
            difference = first_differences(model.predict_indices(batch), expected, batch)
            if difference:
                wrong_batches.append(f"batch of {len(batch)} at row {start} "
                                     f"(compared with {'exact' if all_called else 'scikit-learn on the batch'}): "
                                     f"{difference}")
    failures["batches"] = "; ".join(wrong_batches[:3])
    batch_vs_alone = int((names[estimator.predict(rows)[~certain]] != sklearn_alone).sum())
    return {"openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "rows": len(rows),
            "beyond_bound": int(certain.sum()), "within_bound": int((~certain).sum()), "batch_paths": paths,
            "sklearn_batch_vs_alone_differ": batch_vs_alone,
            "failures": {what: text for what, text in failures.items() if text}}


if __name__ == "__main__":
    print(json.dumps(check(Path(sys.argv[1]))))
