"""Forests predict their trees in turn (shared/forests.py): bit-identical to scikit-learn's own with n_jobs=1, for
one row and for many, with missing values, several outputs, inside a Pipeline or an ensemble; never through joblib."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier,
                              RandomForestRegressor, VotingClassifier)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.estimators import as_served
from shared.forests import in_turn

RNG = np.random.default_rng(20261206)
X = RNG.uniform(0, 1, (400, 6))
X[RNG.uniform(size=X.shape) < 0.05] = np.nan  # forests take missing values (scikit-learn >= 1.4)
FILLED = np.nan_to_num(X, nan=0.5)
Y = (FILLED[:, 0] > 0.5).astype(int) + (FILLED[:, 1] > 0.3)
ROWS = np.vstack([X[:50], RNG.uniform(-1, 2, (50, 6))])


def fitted() -> dict[str, object]:
    return {
        "random forest": RandomForestClassifier(40, random_state=0).fit(X, Y),
        "extra trees, n_jobs=-1": ExtraTreesClassifier(30, random_state=0, n_jobs=-1).fit(X, Y),
        "two outputs": RandomForestClassifier(20, random_state=0).fit(X, np.c_[Y, FILLED[:, 2] > 0.5]),
        "regressor": RandomForestRegressor(30, random_state=0).fit(X, FILLED[:, 3]),
        "regressor, two outputs": ExtraTreesRegressor(20, random_state=0).fit(X, FILLED[:, 3:5]),
        "pipeline": make_pipeline(StandardScaler(), RandomForestClassifier(25, random_state=0)).fit(X, Y),
        "voting": VotingClassifier([("forest", RandomForestClassifier(20, random_state=0)),
                                    ("trees", ExtraTreesClassifier(20, random_state=1)),
                                    ("linear", make_pipeline(StandardScaler(), LogisticRegression()))],
                                   voting="soft").fit(FILLED, Y),
    }


def library_n_jobs_1(model: object) -> object:
    copied = copy.deepcopy(model)
    for step in [copied, *getattr(copied, "estimators_", []), *[s for _, s in getattr(copied, "steps", [])]]:
        if hasattr(step, "n_jobs"):
            step.n_jobs = 1
    return copied


def same(a: object, b: object) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", list(fitted()))
def test_a_forest_answers_bit_for_bit_as_scikit_learn_with_one_job_one_row_or_many(name: str) -> None:
    model = fitted()[name]
    library, ours = library_n_jobs_1(model), in_turn(copy.deepcopy(model))
    rows = np.nan_to_num(ROWS, nan=0.5) if name == "voting" else ROWS
    for method in ("predict", "predict_proba", "predict_log_proba"):
        if not hasattr(library, method):
            continue
        assert same(getattr(ours, method)(rows), getattr(library, method)(rows)), (name, method)
        for row in rows[:10]:
            assert same(getattr(ours, method)(row[None, :]), getattr(library, method)(row[None, :])), (name, method)


def test_a_served_forest_never_goes_through_joblib(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes it fast: broken on purpose (in_turn left out of as_served), the served copy called joblib too."""
    import sklearn.utils.parallel

    model = make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0)).fit(X, Y)
    expected = model.predict_proba(ROWS)
    served = as_served(copy.deepcopy(model), SimpleNamespace(source="user.joblib", features=[]))

    def refused(*args, **kwargs):
        raise AssertionError("joblib dispatch")

    monkeypatch.setattr(sklearn.utils.parallel.Parallel, "__call__", refused)
    with pytest.raises(AssertionError, match="joblib dispatch"):
        model.predict_proba(ROWS)  # the library's own path goes through it
    assert np.array_equal(served.predict_proba(ROWS), expected)
    assert np.array_equal(served.predict(ROWS), model.classes_[np.argmax(expected, axis=1)])


def test_a_forest_whose_class_has_its_own_predict_keeps_it_and_an_unfitted_one_is_left_alone() -> None:
    class Rounded(RandomForestRegressor):
        def predict(self, X):
            return np.round(super().predict(X))

    own = in_turn(Rounded(10, random_state=0).fit(X, FILLED[:, 3] * 10))
    assert "predict" not in vars(own) and set(np.unique(own.predict(ROWS))) <= set(range(-1, 12))
    unfitted = in_turn(RandomForestClassifier())
    assert "predict_proba" not in vars(unfitted)
