"""One prediction asked of one revision, at its tag URL: what the shadow replays and the warm-up sends."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from shared.artifact import Feature, class_key
from shared.prediction_log import REPLAY_HEADER

TUTORIAL_POINT = [5.8, 3.4]  # what an iris version is warmed up with


def _request(url: str, token: str | None, body: dict[str, Any] | None = None,
             replay: str | None = None) -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if replay:
        headers[REPLAY_HEADER] = replay
    if body is None:
        return urllib.request.Request(url, headers=headers)
    return urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                  headers={**headers, "Content-Type": "application/json"})


def ask(url: str, row: list[Any], token: str | None, replay: str,
        timeout: float = 10) -> tuple[Any, float | None, float, str | None]:
    """POST `url`/ {"instances": [row]}: the batch route, which every model version answers with its features in
    order (numbers and strings alike, as the prediction log records them). `replay` says which tool asks (shadow,
    warm-up, rollback-window): its answer is logged as a replay, never counted as a user's.

    Returns (the answer: a class by its text (`class_key`, as the log and the labels name it), or a regressor's
    number; the handler's own time in ms from Server-Timing;
    the round trip in ms; the error or None); a failed request is an error, never an exception."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(_request(f"{url}/", token, {"instances": [row]}, replay), timeout=timeout) as response:
            body = json.loads(response.read())
            timing = response.headers.get("Server-Timing", "")
    except (OSError, ValueError) as exc:
        return None, None, 1000 * (time.perf_counter() - started), str(exc)
    duration = float(timing.split("dur=")[1]) if "dur=" in timing else None
    predictions = body.get("predictions") if isinstance(body, dict) else None
    answer = predictions[0] if isinstance(predictions, list) and predictions else None
    if isinstance(answer, (bool, int)):  # an integer or boolean class, by its text as the prediction log keeps it
        answer = class_key(answer)
    return answer, duration, 1000 * (time.perf_counter() - started), None


def example_row(url: str, token: str | None, timeout: float = 10) -> list[Any]:
    """A row the revision at `url` takes, from its /metadata: the tutorial's point for an iris version; for an
    imported model, 0 for each number and a value its encoder knows for each string. The tutorial's point when
    the metadata cannot be read (the warm-up then says what failed)."""
    try:
        with urllib.request.urlopen(_request(f"{url}/metadata", token), timeout=timeout) as response:
            model = json.loads(response.read())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return list(TUTORIAL_POINT)
    if not model.get("source"):
        return list(TUTORIAL_POINT)
    try:
        return [Feature.from_json(feature).example() for feature in model.get("features", [])]
    except (KeyError, TypeError, ValueError):
        return list(TUTORIAL_POINT)
