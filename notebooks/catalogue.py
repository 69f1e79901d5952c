"""The model versions `pickle_models.ipynb` trains: one entry each, in release order.

The key is the version's name, which is its folder's: `functions/<name>/main.py`
serves it, the image is `iris:<name>`, and the function reports that name.
`check_catalogue` fails training when the entries and the folders differ. A folder `make import-model` wrote
(its manifest names the file it came from) is not the catalogue's: it holds its own artifact.
"""

import sys
from pathlib import Path

from sklearn.svm import SVC, LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for `shared`
from shared.artifact import is_imported  # noqa: E402

MODELS = {
    "svc": lambda: SVC(kernel="linear"),
    "lin_svc": lambda: LinearSVC(random_state=0, max_iter=10_000),
}

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"


def function_folders(functions_dir: Path = FUNCTIONS_DIR) -> set[str]:
    """The catalogue's folders: every one with a main.py, but those of imported models."""
    return {path.parent.name for path in functions_dir.glob("*/main.py") if not is_imported(path.parent)}


def check_catalogue(models: dict = MODELS, functions_dir: Path = FUNCTIONS_DIR) -> None:
    """Every catalogue entry has a function folder and every function folder an entry; else ValueError naming which."""
    folders = function_folders(functions_dir)
    untrained = sorted(folders - set(models))
    unserved = sorted(set(models) - folders)
    problems = []
    if untrained:
        problems.append(f"{', '.join(f'functions/{n}/main.py' for n in untrained)} "
                        f"{'has' if len(untrained) == 1 else 'have'} no entry in notebooks/catalogue.py MODELS: "
                        f"add one (or remove the folder)")
    if unserved:
        problems.append(f"catalogue entr{'y' if len(unserved) == 1 else 'ies'} {', '.join(unserved)} "
                        f"{'has' if len(unserved) == 1 else 'have'} no functions/<name>/main.py: add the folder "
                        f"(main.py as in functions/svc/) or remove the entry")
    if problems:
        raise ValueError("the catalogue and functions/ differ: " + "; ".join(problems))
