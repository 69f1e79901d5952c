"""Exported decision rules agree with scikit-learn wherever they claim certainty, for more than iris."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC, LinearSVC

from shared.linear import LinearRule, export

ESTIMATORS = {
    "binary LinearSVC": (lambda: LinearSVC(random_state=0), 2, 3),
    "binary linear SVC": (lambda: SVC(kernel="linear"), 2, 3),
    "3-class LogisticRegression": (lambda: LogisticRegression(max_iter=1000), 3, 4),
    "4-class linear SVC on 5 features": (lambda: SVC(kernel="linear", C=0.5), 4, 5),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_rule_answers_as_scikit_learn_wherever_it_is_certain(name: str) -> None:
    make, n_classes, n_features = ESTIMATORS[name]
    X, y = make_classification(n_samples=300, n_features=n_features, n_informative=n_features, n_redundant=0,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=1)
    estimator = make().fit(X, y)
    rule = LinearRule(export(estimator), n_features)
    points = np.random.default_rng(2).normal(scale=3.0, size=(50_000, n_features))
    indices, certain = rule.predict(points)
    expected = estimator.predict(points)
    assert certain.mean() > 0.999
    assert np.array_equal(indices[certain], expected[certain])
    ones = [rule.predict_one(tuple(row)) for row in points[:2_000].tolist()]
    assert all(one is None or one == want for one, want in zip(ones, expected[:2_000]))


def test_a_model_that_is_not_linear_has_no_rule() -> None:
    X, y = make_classification(n_samples=100, n_features=2, n_informative=2, n_redundant=0, random_state=0)
    assert export(SVC(kernel="rbf").fit(X, y)) is None
    assert export(SVC(kernel="linear", break_ties=True, decision_function_shape="ovr").fit(X, y)) is None


def test_a_rule_that_does_not_fit_the_features_is_refused() -> None:
    X, y = make_classification(n_samples=100, n_features=3, n_informative=3, n_redundant=0, random_state=0)
    with pytest.raises(ValueError, match="does not fit 2 features"):
        LinearRule(export(LinearSVC(random_state=0).fit(X, y)), 2)
