"""A random forest's (or extra trees') predictions without joblib's dispatch of each tree.

scikit-learn's forest hands every tree to joblib (`Parallel(...)(delayed(_accumulate_prediction)(...))`). With
n_jobs=1 that is a plain loop too, but one that sets scikit-learn's configuration and the warning filters around
each tree: about 30 us a tree, 6.5 ms of a 200-tree forest's 8.5 ms for one row (9.6 ms for 32). `in_turn` gives a
loaded forest a `predict_proba` (classifier; its `predict` and `predict_log_proba` go through it) or a `predict`
(regressor) that asks the same trees, in the same order, with the same `check_input=False` calls and float64 sums,
then divides as scikit-learn does: its answers are bit-identical to the library's with n_jobs=1. (With n_jobs > 1
the library's threads add the trees in whatever order they finish, so its last bits vary from call to call; ours
are those of n_jobs=1. A serving instance's cores are busy with requests already.)

Only the library's own forests are changed, and only where their class still uses the library's method (a
subclass that overrides it keeps its own). The loaded copy changes; the artifact on disk stays the user's bytes.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from shared.steps import every_step


def _proba(forest: Any, X: Any) -> Any:
    X = forest._validate_X_predict(X)
    sums = [np.zeros((X.shape[0], j), dtype=np.float64) for j in np.atleast_1d(forest.n_classes_)]
    for tree in forest.estimators_:
        answer = tree.predict_proba(X, check_input=False)
        if len(sums) == 1:
            sums[0] += answer
        else:
            for output, part in zip(sums, answer):
                output += part
    for output in sums:
        output /= len(forest.estimators_)
    return sums[0] if len(sums) == 1 else sums


def _mean(forest: Any, X: Any) -> np.ndarray:
    X = forest._validate_X_predict(X)
    total = np.zeros((X.shape[0], forest.n_outputs_) if forest.n_outputs_ > 1 else X.shape[0], dtype=np.float64)
    for tree in forest.estimators_:
        total += tree.predict(X, check_input=False)
    total /= len(forest.estimators_)
    return total


def in_turn(estimator: Any) -> Any:
    """`estimator`, every fitted forest in it (a Pipeline's last step, a VotingClassifier's member, ...) predicting
    its trees in turn (see the module's text)."""
    from sklearn.ensemble._forest import ForestClassifier, ForestRegressor

    for node in every_step(estimator):
        if getattr(node, "estimators_", None) is None:
            continue  # not fitted: the library's own method says so
        if isinstance(node, ForestClassifier) and type(node).predict_proba is ForestClassifier.predict_proba:
            node.predict_proba = types.MethodType(_proba, node)
        elif isinstance(node, ForestRegressor) and type(node).predict is ForestRegressor.predict:
            node.predict = types.MethodType(_mean, node)
    return estimator
