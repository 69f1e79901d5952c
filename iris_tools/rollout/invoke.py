"""One prediction asked of one revision, at its tag URL: what the shadow replays and the warm-up sends."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request


def ask(url: str, row: list[float], token: str | None,
        timeout: float = 10) -> tuple[str | None, float | None, float, str | None]:
    """GET `url`/?length=..&width=.. (the tutorial's route, which every model version answers).

    Returns (predicted class, the handler's own time in ms from Server-Timing, the round trip in ms,
    the error or None); a failed request is an error, never an exception."""
    query = urllib.parse.urlencode({"length": repr(row[0]), "width": repr(row[1])})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/?{query}", headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
            timing = response.headers.get("Server-Timing", "")
    except (OSError, ValueError) as exc:
        return None, None, 1000 * (time.perf_counter() - started), str(exc)
    duration = float(timing.split("dur=")[1]) if "dur=" in timing else None
    return body.get("predicted_class"), duration, 1000 * (time.perf_counter() - started), None
