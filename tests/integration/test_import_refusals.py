"""A refusal is a refusal, never a traceback: for every kind of file the import reads (.joblib, .pkl, .pickle, .skops,
.json, .ubj, .txt), an empty file, random bytes, a file cut in half, plain text, a JSON document and a file of another
kind each end in one line naming the reason, exit status 1, and nothing written."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pytest
import skops.io
import xgboost
from sklearn.linear_model import LogisticRegression

import iris_tools.model_import.__main__ as model_import

SUFFIXES = (".joblib", ".pkl", ".pickle", ".skops", ".json", ".ubj", ".txt")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A file each kind reads, whole: what the broken ones are cut from."""
    folder = tmp_path_factory.mktemp("good")
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(X, y), buffer)
    skops.io.dump(LogisticRegression().fit(X, y), folder / "model.skops")
    booster = xgboost.XGBClassifier(n_estimators=3).fit(X, y)  # these bytes: what the crashing cut is cut from
    booster.save_model(str(folder / "model.json"))
    booster.save_model(str(folder / "model.ubj"))
    lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(str(folder / "model.txt"))
    files = {suffix: (folder / f"model{suffix}").read_bytes() for suffix in (".skops", ".json", ".ubj", ".txt")}
    return {**files, ".joblib": buffer.getvalue(), ".pkl": buffer.getvalue(), ".pickle": buffer.getvalue()}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_broken_file_of_every_kind_is_refused_in_one_line(suffix: str, good: dict[str, bytes], tmp_path: Path,
                                                                capfd: pytest.CaptureFixture) -> None:
    """`make import-model`'s own entry point, its output read at the descriptors: what a library's C core writes to
    stderr by itself counts too."""
    other = good[".txt"] if suffix in (".joblib", ".pkl", ".pickle", ".skops") else good[".joblib"]
    broken = {"empty": b"", "random bytes": os.urandom(512),  # new bytes every run: a reader must refuse any "cut in half": good[suffix][: len(good[suffix]) // 2],
              "plain text": b"a model, honestly\n", "a JSON document": b'{"learner": 1}', "another kind": other}
    if suffix == ".ubj":  # XGBoost 3.2's UBJSON reader dies of SIGSEGV on this one: the import must not
        broken["cut where the reader crashes"] = good[suffix][:196]
    functions = tmp_path / "functions"
    for kind, content in broken.items():
        file = tmp_path / f"model{suffix}"
        file.write_bytes(content)
        status = model_import.main([str(file), "mine", "--functions-dir", str(functions)])
        out, err = capfd.readouterr()
        said = err.strip().splitlines()
        assert status == 1, (kind, out, err)
        assert len(said) == 1 and said[0].startswith("error: ") and said[0].endswith("nothing was written"), (
            kind, err)
        assert not functions.exists() or list(functions.iterdir()) == [], kind


def test_a_wrapper_pickle_whose_booster_bytes_are_corrupt_is_refused_in_one_line(tmp_path: Path,
                                                                                capfd: pytest.CaptureFixture) -> None:
    """An XGBClassifier pickled, its booster's bytes inside overwritten: the library's reader parses them in a
    process of its own first (it may crash there), and the import refuses the file in one line either way."""
    X = np.random.default_rng(0).normal(size=(50, 3))
    wrapper = xgboost.XGBClassifier(n_estimators=3).fit(X, (X[:, 0] > 0).astype(int))
    payload = bytearray(pickle.dumps(wrapper))
    raw = bytes(wrapper.get_booster().__getstate__()["handle"])
    start = bytes(payload).find(raw)
    assert start > 0
    for seed in range(3):
        garbage = np.random.default_rng(seed).integers(0, 256, len(raw) - 64, dtype=np.uint8).tobytes()
        payload[start + 32:start + len(raw) - 32] = garbage
        (tmp_path / "model.pkl").write_bytes(bytes(payload))
        status = model_import.main([str(tmp_path / "model.pkl"), "mine", "--functions-dir", str(tmp_path / "fn")])
        said = capfd.readouterr().err.strip().splitlines()
        assert status == 1 and len(said) == 1 and said[0].endswith("nothing was written"), said
