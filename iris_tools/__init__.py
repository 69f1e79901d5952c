"""Local tooling: run model versions side by side, benchmark them, and (iris_tools.cloudrun) rehearse Cloud Run.

Run its commands with the project's venv: `.venv/bin/python -m iris_tools.run_local ...`.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where model versions live: functions/<name>/main.py. IRIS_FUNCTIONS_DIR points the tools (and the
# local Cloud Run's image lookup) elsewhere, as the tests do for models made to fail.
FUNCTIONS_DIR = Path(os.environ.get("IRIS_FUNCTIONS_DIR") or ROOT / "functions")
