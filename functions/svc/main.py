"""Model version `svc`: its name is this folder's; the shared handler does the rest."""

from pathlib import Path

from shared.function import serve_model

predict = serve_model(Path(__file__).parent)
