"""Log records as one JSON object per line on stdout, the shape Cloud Run's logging reads."""

from __future__ import annotations

import json
import logging
import sys


class CloudRunFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_to_stdout(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudRunFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
