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


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    return walk(specimens(), tmp_path_factory.mktemp("walk"))


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
