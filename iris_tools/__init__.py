"""Local tooling: run model versions side by side (local), benchmark them (bench), rehearse Cloud Run (cloudrun),
migrate traffic (rollout), watch it (console) and compare versions (report).

Run its commands with the project's venv: `.venv/bin/python -m iris_tools.local ...`. Every environment variable
they read is declared in iris_tools/environment.py (`python -m iris_tools.environment` lists them).
"""
