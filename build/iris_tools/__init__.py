"""Local tooling: run model versions side by side, benchmark them, and (iris_tools.cloudrun) rehearse Cloud Run.

Run its commands with the project's venv: `.venv/bin/python -m iris_tools.run_local ...`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FUNCTIONS_DIR = ROOT / "functions"
