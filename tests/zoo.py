"""Every classifier and regressor scikit-learn lists (`all_estimators`), each fitted on a small table it accepts, as a
user would save it: what the import's walk (tests/integration/test_every_estimator.py) imports and serves.

A table of 60 rows and 4 number columns (small non-negative integers, as CategoricalNB takes them); classes 0, 1 and 2
(integers: the answers must keep their type), or 0 and 1 for the estimators that take only two; a positive target for
regressors (Gamma and Poisson take no other), two targets for the multi-output ones. A meta-estimator wraps a
LogisticRegression or a Ridge; an ensemble of estimators has two members.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

CLASSIFIER, REGRESSOR = "classifier", "regressor"
ROWS, FEATURES = 60, 4

# What an estimator needs besides the table to be fitted at all (a parameter its default cannot fit with here).
PARAMETERS: dict[str, dict[str, Any]] = {
    "NuSVC": {"nu": 0.1},
    "QuadraticDiscriminantAnalysis": {"reg_param": 0.1},
    "RadiusNeighborsClassifier": {"radius": 2.0},  # every row of the table then has neighbours
    "RadiusNeighborsRegressor": {"radius": 2.0},
}
BINARY = {"FixedThresholdClassifier", "TunedThresholdClassifierCV"}
MULTI_OUTPUT = {"ClassifierChain", "MultiOutputClassifier", "MultiOutputRegressor", "RegressorChain", "CCA",
                "PLSCanonical", "MultiTaskElasticNet", "MultiTaskElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV"}
ONE_FEATURE = {"IsotonicRegression"}


@dataclass(frozen=True)
class Specimen:
    name: str  # the class's name, as all_estimators lists it
    kind: str
    estimator: Any  # fitted
    X: np.ndarray  # what it was fitted on
    X_test: np.ndarray  # rows to ask it


def table(kind: str, name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(ROWS, FEATURES)).astype(np.float64)
    if name in ONE_FEATURE:
        X = X[:, :1] + rng.uniform(0, 1, size=(ROWS, 1))
    if kind == CLASSIFIER:
        y = (X[:, 0] + X[:, -1] > 3).astype(np.int64)
        if name not in BINARY:
            y = y + (X[:, 1 % X.shape[1]] > 2)
        return X, np.column_stack([y, X[:, 0] > 1]).astype(np.int64) if name in MULTI_OUTPUT else y
    y = 3.0 + X @ np.linspace(0.5, 1.5, X.shape[1]) + rng.uniform(0, 0.1, ROWS)
    return X, np.column_stack([y, 2 * y + 1]) if name in MULTI_OUTPUT else y


def build(name: str, cls: type, kind: str) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    base, member = (LogisticRegression, DecisionTreeClassifier) if kind == CLASSIFIER else (Ridge, DecisionTreeRegressor)
    parameters = dict(PARAMETERS.get(name, {}))
    signature = inspect.signature(cls).parameters
    if "estimator" in signature and (signature["estimator"].default is inspect.Parameter.empty or
                                     name == "SelfTrainingClassifier"):
        parameters["estimator"] = base()
    if "estimators" in signature and signature["estimators"].default is inspect.Parameter.empty:
        parameters["estimators"] = [("linear", base()), ("tree", member(random_state=0))]
    if "random_state" in signature:
        parameters["random_state"] = 0
    return cls(**parameters)


def specimens() -> list[Specimen]:
    """Each classifier and regressor of `all_estimators`, fitted (one that cannot be fitted here raises)."""
    from sklearn.utils import all_estimators

    found = []
    for kind in (CLASSIFIER, REGRESSOR):
        for name, cls in all_estimators(type_filter=kind):
            X, y = table(kind, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings on a table this small
                estimator = build(name, cls, kind).fit(X, y)
            X_test, _ = table(kind, name, seed=1)
            found.append(Specimen(name, kind, estimator, X, X_test[:12]))
    return found
