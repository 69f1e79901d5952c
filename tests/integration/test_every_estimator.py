"""Every classifier and regressor scikit-learn lists (`all_estimators`), fitted on a small table (tests/zoo.py), saved
with joblib, imported by `make import-model`'s own entry point and served by the shared handler: every route answers
as the estimator's own `predict` does, classes in their own type. The walk runs on every run of the suite, so a new
scikit-learn whose estimators the import cannot take fails here, naming each one and why; docs/models.md's table is
the walk's own (it cannot drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.zoo import SERVED, Outcome, documented_table, specimens, table_text, walk

MODELS_DOC = ROOT / "docs" / "models.md"


WORKSPACE: dict[str, Path] = {}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    WORKSPACE["walk"] = tmp_path_factory.mktemp("walk")
    return walk(specimens(), WORKSPACE["walk"])


def test_scikit_learn_lists_44_classifiers_and_55_regressors_and_the_walk_takes_each(outcomes: list[Outcome]) -> None:
    kinds = [outcome.kind for outcome in outcomes]
    assert (kinds.count("classifier"), kinds.count("regressor")) == (44, 55)


def test_every_one_is_served_on_every_route_as_its_predict_answers(outcomes: list[Outcome]) -> None:
    failed = [f"{outcome.name}: {outcome.result}" for outcome in outcomes if outcome.result != SERVED]
    assert not failed, "not served as predict answers:\n" + "\n".join(failed)


def test_multi_output_models_are_among_them(outcomes: list[Outcome]) -> None:
    multi = sorted(outcome.name for outcome in outcomes if outcome.outputs > 1)
    assert {"MultiOutputRegressor", "RegressorChain", "ClassifierChain", "MultiOutputClassifier", "CCA",
            "MultiTaskLasso"} <= set(multi)


def test_the_table_in_docs_models_is_the_walks_own(outcomes: list[Outcome]) -> None:
    assert documented_table(MODELS_DOC.read_text()) == table_text(outcomes), (
        "docs/models.md's table is not the walk's: run `.venv/bin/python -m tests.zoo --docs docs/models.md`")


def test_concurrent_requests_predicted_together_answer_as_each_alone(outcomes: list[Outcome]) -> None:
    """Every served model asked its test rows at once, one request a row, from threads: rows of requests that arrive
    while a predict runs are predicted together (shared/batching.py), and each answer is exactly its row's own."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from shared.model import ServedModel

    found = {specimen.name: specimen for specimen in specimens()}
    batched = set()
    for outcome in outcomes:
        if outcome.result != SERVED:
            continue
        specimen = found[outcome.name]
        served = ServedModel.load(WORKSPACE["walk"] / "functions" / outcome.name.lower()[:40],
                                  outcome.name.lower()[:40])
        if served.manifest.batch:
            batched.add(outcome.name)
        alone = [served.predict(specimen.X_test[i:i + 1]) for i in range(len(specimen.X_test))]
        calls: list[int] = []
        predict, lock = served._batcher._predict, threading.Lock()

        def counted(rows: np.ndarray, predict=predict) -> np.ndarray:
            with lock:
                calls.append(len(rows))
            return predict(rows)

        served._batcher._predict = counted
        with ThreadPoolExecutor(len(specimen.X_test)) as pool:
            together = list(pool.map(lambda i: served.predict(specimen.X_test[i:i + 1]), range(len(alone))))
        if specimen.kind == "regressor":
            np.testing.assert_allclose(np.asarray(together, dtype=float), np.asarray(alone, dtype=float), rtol=1e-9,
                                       atol=0, err_msg=outcome.name)
        else:
            assert together == alone, outcome.name
        assert sum(calls) == (len(alone) if served.rule is None else 0), outcome.name  # a rule: no estimator call
    # The models batching is for take it; one whose answers move in their last bits with the batch does not.
    assert {"HistGradientBoostingClassifier", "RandomForestClassifier", "GradientBoostingRegressor"} <= batched
    assert "GaussianProcessRegressor" not in batched
