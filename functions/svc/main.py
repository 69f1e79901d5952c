"""Model version `svc`: SVC with a linear kernel, served by the shared handler."""

from pathlib import Path

from shared.function import serve_model

predict = serve_model("svc", Path(__file__).parent)
