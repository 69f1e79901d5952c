"""Model version `lin_svc`: LinearSVC, served by the shared handler."""

from pathlib import Path

from shared.function import serve_model

predict = serve_model("lin_svc", Path(__file__).parent)
