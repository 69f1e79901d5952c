"""`make bench BENCH_ARGS=--only ...` with a name that is no target or group: one line naming what there is, exit 2,
nothing measured or written (it used to divide by zero)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iris_tools.bench.measure import main


def test_an_unknown_target_is_refused_naming_the_targets_and_groups(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    assert main(["--only", "rf", "ours:rf", "--json", str(results)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no target or group named rf;") and "ours-nobatch:rf" in error
    assert "groups: baseline, ours," in error and not results.exists()
