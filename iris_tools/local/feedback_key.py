"""The feedback key on the operator's side: made once, kept under RUN_DIR (mode 0600), read by every client of ours
that posts labels (the labelled load, the tests), and passed to a service like any other variable.

    RUN_DIR/feedback-key             the key (64 hex digits)
    RUN_DIR/feedback-key.previous    the key before a rotation, until the services have the new one

FEEDBACK_KEY in the environment overrides the file (a CI secret, a key from Secret Manager).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from iris_tools import environment
from iris_tools.local.state import write_atomically
from shared.feedback_signature import HEADER, signature

FILE_NAME = "feedback-key"


def key_path(run_dir: Path | None = None) -> Path:
    return (run_dir or environment.value("RUN_DIR")) / FILE_NAME


def current_key(run_dir: Path | None = None) -> str | None:
    """FEEDBACK_KEY when set, else the key `make feedback-key` made; None when there is neither."""
    given = (os.environ.get("FEEDBACK_KEY") or "").strip()
    if given:
        return given
    path = key_path(run_dir)
    return path.read_text().strip() or None if path.is_file() else None


def make_key(run_dir: Path | None = None, rotate: bool = False) -> tuple[str, str | None, bool]:
    """The key (made when there is none, or anew with `rotate`), the one before it after a rotation, and whether
    this call made it."""
    path = key_path(run_dir)
    existing = path.read_text().strip() if path.is_file() else ""
    if existing and not rotate:
        return existing, None, False
    key = secrets.token_hex(32)
    if existing:
        write_atomically(path.with_name(FILE_NAME + ".previous"), existing + "\n")
    write_atomically(path, key + "\n")
    return key, existing or None, True


def signed_headers(body: bytes, key: str | None) -> dict[str, str]:
    """The headers a POST of `body` to /feedback carries: its signature when there is a key (without one the
    service answers 403, which says how to make one)."""
    return {HEADER: signature(body, key)} if key else {}
