"""Names Cloud Run accepts: services, revisions and tags are DNS labels (tags become host-name parts)."""

from __future__ import annotations

import re

LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
SERVICE_MAX = 49
REVISION_MAX = 63
TAG_MAX = 46


def suggest_tag(tag: object) -> str:
    """The nearest valid tag to `tag` (lowercase, dashes for anything else, a letter first)."""
    text = re.sub(r"[^a-z0-9-]+", "-", str(tag).lower()).strip("-")
    if not text or not text[0].isalpha():
        text = "t-" + text
    return text[:TAG_MAX].rstrip("-") or "candidate"
