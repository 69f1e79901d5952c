"""The comparison table: every version asked the same points, side by side."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from shared.artifact import Feature, class_key

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


def parse_points(tokens: list[str]) -> list[tuple[float, ...] | dict[str, str]]:
    """'5.8,3.4 6.1,2.8' or '5.8 3.4': comma-joined points, or a plain pair of numbers; or name=value pairs
    ('tenure=12,plan=pro,monthly=29.5'), asked of the versions that take exactly those features."""
    if not tokens:
        tokens = [DEFAULT_POINT]
    if all("," not in token and "=" not in token for token in tokens) and len(tokens) % 2 == 0:
        tokens = [f"{a},{b}" for a, b in zip(tokens[::2], tokens[1::2])]
    points: list[tuple[float, ...] | dict[str, str]] = []
    for token in tokens:
        if "=" in token:
            pairs = [item.partition("=") for item in token.split(",")]
            if any(not name or not sep for name, sep, _ in pairs):
                raise RunError(f"POINT: {token!r} mixes name=value pairs with plain values "
                               f"(example: POINT=\"tenure=12,plan=pro,monthly=29.5\")")
            points.append({name: value for name, _, value in pairs})
            continue
        try:
            points.append(tuple(float(value) for value in token.split(",")))
        except ValueError:
            raise RunError(f"POINT: {token!r} is not comma-separated numbers (example: POINT=\"5.8,3.4 6.1,2.8\") "
                           f"or name=value pairs") from None
    return points


def parse_urls(items: list[str]) -> list[tuple[str, str]]:
    targets = []
    for item in items:
        name, sep, url = item.partition("=")
        targets.append((name, url) if sep and not name.startswith("http") else (item, item))
    return targets


def _sample(features: list[dict]) -> dict[str, str]:
    """A point a version takes when none given fits it (Feature.example of each of its features)."""
    examples = {f["name"]: Feature.from_json(f).example() for f in features}
    return {name: value if isinstance(value, str) else f"{value:g}" for name, value in examples.items()}


def _answer(status: int, body: dict) -> str:
    if status != 200:
        return f"error {status}: {body.get('error')}"
    if "prediction" in body:
        value = body["prediction"]
        return json.dumps(value) if isinstance(value, list) else f"{value:.6g}"
    return class_key(body["predicted_class"]) if not isinstance(body["predicted_class"], list) else json.dumps(
        body["predicted_class"])


def compare(points: list[tuple[float, ...] | dict[str, str]], targets: list[tuple[str, str]]) -> int:
    """Versions that take the same features, asked the same points, side by side: one table per feature set (the
    iris versions, and each imported model with those of the same features). A point fits a table when it names
    exactly its features, or (plain numbers) has as many values as its features and they are all numbers; a table
    no point fits is asked a sample point."""
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
    print("versions:")
    for name, url, meta in described:
        model = meta["model"]
        accuracy = model.get("training_accuracy")
        trained = f"training accuracy {accuracy:.3f}" if accuracy is not None else f"imported {model.get('task')}"
        print(f"  {name:<10} {url:<24} revision {meta['serving']['revision'] or '-':<22} "
              f"{model['algorithm'].rsplit('.', 1)[-1]:<10} {trained}")
    groups: dict[tuple[str, ...], list[tuple[str, str, dict]]] = {}
    for entry in described:
        groups.setdefault(tuple(f["name"] for f in entry[2]["model"]["features"]), []).append(entry)
    fitted = False
    for names, members in groups.items():
        features = members[0][2]["model"]["features"]
        aliases = [feature["alias"] for feature in features]
        numbers = all(feature.get("type", "number") == "number" for feature in features)
        chosen = [point for point in points if (isinstance(point, dict) and set(point) in (set(names), set(aliases)))
                  or (isinstance(point, tuple) and numbers and len(point) == len(aliases))]
        fitted = fitted or bool(chosen)
        if not chosen and len(groups) == 1:
            point = points[0]
            raise RunError(f"point {point} has {len(point)} values; the models take {len(aliases)} ({', '.join(aliases)})")
        _table(members, aliases, chosen or [_sample(features)])
    if not fitted:
        raise RunError(f"no point fits any version: give values in feature order, or name=value pairs")
    return 0


def _table(members: list[tuple[str, str, dict]], aliases: list[str], points: list) -> None:
    headers = [*aliases, *(name for name, _, _ in members), ""]
    rows = []
    disagreements = 0
    for point in points:
        values = [point.get(alias, point.get(feature)) for alias, feature in
                  zip(aliases, (f["name"] for f in members[0][2]["model"]["features"]))] \
            if isinstance(point, dict) else [repr(v) for v in point]
        query = urllib.parse.urlencode(dict(zip(aliases, values)))
        answers = [_answer(*get_json(f"{url}/?{query}")) for _, url, _ in members]
        differ = len(set(answers)) > 1
        disagreements += differ
        shown = [f"{v:g}" for v in point] if isinstance(point, tuple) else values
        rows.append([*shown, *answers, "<- differ" if differ else "same"])
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    print()
    for line in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"\n{disagreements} of {len(points)} point(s) answered differently by the versions")
