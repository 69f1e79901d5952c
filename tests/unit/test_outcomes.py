"""The join of predictions and labels, and the mix test, on figures worked by hand."""

from __future__ import annotations

import pytest

from iris_tools.quality.outcomes import TrueLabel, Prediction, join, mix_shift, wilson
from iris_tools.quality.sources import file_labels
from iris_tools.cli.failures import ToolError


def test_labels_join_their_own_answer_by_id_and_batches_only_count_in_the_mix() -> None:
    predictions = [Prediction("a", "r1", "setosa", 10.0), Prediction("b", "r1", "versicolor", 11.0),
                   Prediction("c", "r2", "setosa", 12.0), Prediction(None, "r2", "virginica", 13.0),
                   Prediction("d", "r2", "virginica", 14.0)]
    labels = [TrueLabel("a", "setosa", 12.0), TrueLabel("b", "virginica", 15.0), TrueLabel("c", "versicolor", 13.0),
              TrueLabel("c", "setosa", 20.0), TrueLabel("zz", "setosa", 1.0)]  # c given twice: the last counts
    found = join(predictions, labels)
    r1, r2 = found.revisions["r1"], found.revisions["r2"]
    assert (r1.predictions, r1.joinable, r1.labelled, r1.correct) == (2, 2, 2, 1)
    assert (r2.predictions, r2.joinable, r2.labelled, r2.correct) == (3, 2, 1, 1)
    assert r1.confusion == {"setosa": {"setosa": 1}, "virginica": {"versicolor": 1}}
    assert r1.recall() == {"setosa": 1.0, "virginica": 0.0} and r2.coverage == 0.5
    assert r1.delay() == {"p50_s": 3.0, "p90_s": 2.0} and r2.mix == {"setosa": 1, "virginica": 2}
    assert (found.labels, found.unmatched) == (4, 1)


def test_the_mix_shift_is_the_total_variation_with_a_chi_square_test() -> None:
    same = mix_shift({"a": 50, "b": 50}, {"a": 50, "b": 50})
    assert same.distance == 0 and same.p_value == pytest.approx(1.0)
    moved = mix_shift({"a": 80, "b": 20}, {"a": 40, "b": 60})
    assert moved.distance == pytest.approx(0.4) and moved.p_value < 1e-6 and moved.dof == 1
    assert mix_shift({}, {"a": 1}) is None
    low, high = wilson(80, 100)
    assert low == pytest.approx(0.7112, abs=1e-4) and high == pytest.approx(0.8666, abs=1e-4)


def test_a_labels_file_is_id_comma_label_and_a_bad_row_is_named(tmp_path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("id,label\nr1,setosa\n\nr2, virginica\n")
    assert [(l.id, l.label, l.at) for l in file_labels(path)] == [("r1", "setosa", None), ("r2", "virginica", None)]
    path.write_text("r1,setosa\nr2\n")
    with pytest.raises(ToolError, match="row 2 is not id,label"):
        file_labels(path)
    with pytest.raises(ToolError, match="cannot be read"):
        file_labels(tmp_path / "missing.csv")


def test_a_regressors_outcomes_are_its_mean_absolute_error_and_its_predicted_values() -> None:
    from iris_tools.quality.outcomes import Prediction, TrueLabel, join

    predictions = [Prediction("a", "r1", 10.0, 0.0), Prediction("b", "r1", 20.0, 0.0), Prediction(None, "r1", 5.0, 0.0),
                   Prediction("c", "r2", 12.0, 0.0)]
    labels = [TrueLabel("a", 13.0, 1.0), TrueLabel("b", "18", None), TrueLabel("c", "setosa", 2.0)]
    found = join(predictions, labels)
    r1, r2 = found.revisions["r1"], found.revisions["r2"]
    assert (r1.labelled, r1.mae, r1.values, r1.mix) == (2, 2.5, [10.0, 20.0, 5.0], {})
    assert r1.mae_variance == 0.25 and r2.labelled == 0  # a class name is no regressor's label
    assert r1.as_json()["task"] == "regressor" and r1.as_json()["prediction_quantiles"]["p50"] == 10.0


def test_the_regression_gate_rolls_back_a_worse_mae_and_a_moved_distribution_and_holds_for_labels() -> None:
    import numpy as np

    from iris_tools.quality.outcomes import RevisionOutcome
    from iris_tools.rollout.quality_gate import QualityThresholds, judge_quality

    def revision(errors, values) -> RevisionOutcome:
        errors = np.abs(np.asarray(errors, dtype=float))
        return RevisionOutcome("r", predictions=len(values), labelled=len(errors), error_sum=float(errors.sum()),
                               error_squares=float((errors ** 2).sum()), values=list(values))

    rng = np.random.default_rng(5)
    values = rng.normal(100, 10, 400).tolist()
    stable = revision(rng.normal(0, 10, 400), values)
    worse = judge_quality(revision(rng.normal(0, 14, 400), values), stable, QualityThresholds(), 0.0025)
    assert worse.decision == "rollback" and "mean absolute error" in worse.reasons[0]
    same = judge_quality(revision(rng.normal(0, 10, 400), values), stable, QualityThresholds(), 0.0025)
    assert same.decision == "promote", same.reasons
    moved = judge_quality(revision(rng.normal(0, 10, 400), rng.normal(120, 10, 400).tolist()), stable,
                          QualityThresholds(), 0.0025)
    assert moved.decision == "rollback" and "Kolmogorov-Smirnov" in moved.reasons[-1]
    few = judge_quality(revision(rng.normal(0, 10, 20), values), revision(rng.normal(0, 10, 20), values),
                        QualityThresholds(), 0.0025)
    assert few.decision == "hold" and few.wants_labels
