"""`POST /feedback`: true labels that come back for answers given earlier, joined to them later by id.

    {"id": "<an answer's X-Answer-Id>", "label": "setosa"}       or a list of such objects
    {"id": "...", "label": 0}                                    a class in its own JSON type (an integer, a boolean)
    {"id": "...", "label": 151.0}                                a regressor's label: a finite number

Only the holder of the feedback key may label (shared/feedback_signature.py: a signed body, else 401; no key, 403).
The function keeps no state: an accepted body becomes one structured log line (`"kind": "feedback"`), so this works
on Cloud Run behind a split, whichever revision receives it, and the join reads the lines back from Cloud Logging.
A body that does not parse, an unknown class, a missing or oversized id, an id named twice, or more entries than
MAX_BATCH_ROWS is refused whole with a 4xx and logs nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.artifact import class_key
from shared.errors import InvalidInput
from shared.request_id import MAX_ID_CHARS


@dataclass(frozen=True)
class Label:
    id: str
    label: str | float  # a class name; a regressor's true value


def parse_feedback(body: bytes, classes: Sequence[str] | None, max_entries: int) -> list[Label]:
    """The labels of a body. `classes`: a classifier's class names; None for a regressor, whose labels are
    numbers (a string, a boolean, NaN or infinity is refused)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput('body: not JSON; send {"id": "...", "label": "setosa"} or a list of them',
                           field="body") from None
    entries = document if isinstance(document, list) else [document]
    if not entries:
        raise InvalidInput("body: an empty list; send at least one {id, label}", field="body")
    if len(entries) > max_entries:
        raise InvalidInput(f"body: {len(entries)} labels, more than the {max_entries} one request may carry "
                           f"(MAX_BATCH_ROWS)", field="body")
    labels = []
    named: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"[{index}]" if isinstance(document, list) else ""
        if not isinstance(entry, dict):
            raise InvalidInput(f"body{where}: expected an object with id and label", field=f"body{where}")
        unknown = sorted(set(entry) - {"id", "label"})
        if unknown:
            raise InvalidInput(f"{where}{unknown[0]}: unknown field; an entry has id and label",
                               field=f"{where}{unknown[0]}".lstrip("."))
        identifier, label = entry.get("id"), entry.get("label")
        if not isinstance(identifier, str) or not identifier:
            raise InvalidInput(f"{where}id: the id of the answer labelled (its X-Answer-Id) is required",
                               field=f"{where}id")
        if len(identifier) > MAX_ID_CHARS:
            raise InvalidInput(f"{where}id: {len(identifier)} characters, more than {MAX_ID_CHARS}", field=f"{where}id")
        if identifier in named:
            raise InvalidInput(f"{where}id: {identifier!r} is labelled twice in this body; an answer has one label",
                               field=f"{where}id")
        named.add(identifier)
        if classes is None:
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                raise InvalidInput(f"{where}label: {label!r} is not a finite number; a regressor's label is the true "
                                   f"value, a number", field=f"{where}label")
            label = float(label)
        else:
            label = _class_of(label, classes, where)
        labels.append(Label(identifier, label))
    return labels


def _class_of(label: Any, classes: Sequence[Any], where: str) -> str:
    """The class a label names, by its text (`class_key`, as the log keeps it): the class itself in its own JSON type
    (0 for an integer class, true for a boolean one; 1 is not true), or its text as a CSV file has it ("0")."""
    for value in classes:
        if (type(label) is type(value) and label == value) or (isinstance(label, str) and label == class_key(value)):
            return class_key(value)
    shown = json.dumps(label) if isinstance(label, (str, int, float, bool)) or label is None else type(label).__name__
    raise InvalidInput(f"{where}label: {shown} is not one of the classes "
                       f"{', '.join(json.dumps(value) for value in classes)}", field=f"{where}label")


def feedback_answer(labels: list[Label]) -> dict[str, Any]:
    return {"accepted": len(labels)}
