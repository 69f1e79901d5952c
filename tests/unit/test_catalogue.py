"""The catalogue of trained versions and the function folders name the same models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.helpers import MODEL_NAMES, ROOT

spec = importlib.util.spec_from_file_location("catalogue", ROOT / "notebooks" / "catalogue.py")
catalogue = importlib.util.module_from_spec(spec)
spec.loader.exec_module(catalogue)


def functions_with(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text("")
    return tmp_path


def test_the_shipped_catalogue_matches_the_function_folders() -> None:
    catalogue.check_catalogue()
    assert sorted(catalogue.MODELS) == MODEL_NAMES


def test_a_function_folder_without_a_catalogue_entry_fails_training_naming_it(tmp_path: Path) -> None:
    folders = functions_with(tmp_path, "svc", "rbf_svc")
    with pytest.raises(ValueError, match=r"functions/rbf_svc/main.py has no entry in notebooks/catalogue.py"):
        catalogue.check_catalogue({"svc": object}, folders)


def test_a_catalogue_entry_without_a_folder_fails_training_naming_it(tmp_path: Path) -> None:
    folders = functions_with(tmp_path, "svc")
    with pytest.raises(ValueError, match=r"catalogue entry knn has no functions/<name>/main.py"):
        catalogue.check_catalogue({"svc": object, "knn": object}, folders)


def test_a_folder_without_main_py_is_not_a_model_version(tmp_path: Path) -> None:
    folders = functions_with(tmp_path, "svc")
    (folders / "notes").mkdir()
    catalogue.check_catalogue({"svc": object}, folders)
