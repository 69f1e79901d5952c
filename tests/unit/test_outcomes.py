"""The mix test, the labels file and the regression gate, on figures worked by hand (the join itself:
test_outcome_store.py)."""

from __future__ import annotations

import pytest

from iris_tools.quality.outcomes import mix_shift, wilson
from iris_tools.quality.sources import file_labels
from iris_tools.cli.failures import ToolError


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


def test_the_regression_gate_rolls_back_a_worse_mae_and_a_moved_distribution_and_holds_for_labels() -> None:
    import numpy as np

    from iris_tools.quality.outcomes import RevisionOutcome
    from iris_tools.rollout.quality_gate import QualityThresholds, judge_quality

    def revision(errors, values) -> RevisionOutcome:
        errors = np.abs(np.asarray(errors, dtype=float))
        return RevisionOutcome("r", predictions=len(values), labelled=len(errors), error_sum=float(errors.sum()),
                               error_squares=float((errors ** 2).sum()), sketch=RevisionOutcome.sketch_of(values),
                               values_count=len(values))

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
