"""The comparison table: every version asked the same points, side by side."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_POINT = "5.8,3.4"


class RunError(Exception):
    """Something the user can fix; printed without a traceback."""


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": f"HTTP {exc.code} with a body that is not JSON"}


def parse_points(tokens: list[str]) -> list[tuple[float, ...]]:
    """'5.8,3.4 6.1,2.8' or '5.8 3.4': comma-joined points, or a plain pair of numbers."""
    if not tokens:
        tokens = [DEFAULT_POINT]
    if all("," not in token for token in tokens) and len(tokens) % 2 == 0:
        tokens = [f"{a},{b}" for a, b in zip(tokens[::2], tokens[1::2])]
    points = []
    for token in tokens:
        try:
            points.append(tuple(float(value) for value in token.split(",")))
        except ValueError:
            raise RunError(f"POINT: {token!r} is not comma-separated numbers (example: POINT=\"5.8,3.4 6.1,2.8\")") from None
    return points


def parse_urls(items: list[str]) -> list[tuple[str, str]]:
    targets = []
    for item in items:
        name, sep, url = item.partition("=")
        targets.append((name, url) if sep and not name.startswith("http") else (item, item))
    return targets


def compare(points: list[tuple[float, ...]], targets: list[tuple[str, str]]) -> int:
    if not targets:
        raise RunError("nothing to compare: start the versions with `make demo` or `make up`, or pass URLS")
    described = []
    for name, url in targets:
        try:
            status, meta = get_json(url.rstrip("/") + "/metadata")
        except OSError as exc:
            raise RunError(f"{name} at {url} does not answer: {exc}") from None
        if status != 200:
            raise RunError(f"{name} at {url}: GET /metadata answered {status}")
        described.append((name, url.rstrip("/"), meta))
    aliases = [feature["alias"] for feature in described[0][2]["model"]["features"]]
    print("versions:")
    for name, url, meta in described:
        model = meta["model"]
        print(f"  {name:<10} {url:<24} revision {meta['serving']['revision'] or '-':<22} "
              f"{model['algorithm'].rsplit('.', 1)[-1]:<10} training accuracy {model['training_accuracy']:.3f}")
    headers = [*aliases, *(name for name, _, _ in described), ""]
    rows = []
    disagreements = 0
    for point in points:
        if len(point) != len(aliases):
            raise RunError(f"point {point} has {len(point)} values; the models take {len(aliases)} ({', '.join(aliases)})")
        query = urllib.parse.urlencode(dict(zip(aliases, (repr(v) for v in point))))
        answers = []
        for _, url, _ in described:
            status, body = get_json(f"{url}/?{query}")
            answers.append(body["predicted_class"] if status == 200 else f"error {status}: {body.get('error')}")
        differ = len(set(answers)) > 1
        disagreements += differ
        rows.append([*(f"{v:g}" for v in point), *answers, "<- differ" if differ else "same"])
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    print()
    for line in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"\n{disagreements} of {len(points)} point(s) answered differently by the versions")
    return 0
