"""Cloud Logging's entries.list over the revisions' own logs, so `gcloud logging read` works locally.

Each revision's stdout and stderr go to `$RUN_DIR/cloudrun/logs/<revision>.log`. A line that is a JSON
object becomes an entry with that `jsonPayload` (its `severity`, `time`, `httpRequest` and
`logging.googleapis.com/labels` and `/trace` lifted out as Cloud Logging does); every line is also the entry's
`textPayload` (what gcloud's `logs read` prints). A job task attempt's log (`<execution>-<task>-<attempt>.log`) gives
`cloud_run_job` entries labelled with its execution, task index and attempt. Filters: terms joined by AND,
each `field OP "value"` with OP one of = != > >= < <= : (has), on dotted paths of the entry
(`resource.labels.revision_name`, `jsonPayload.kind`, `severity`, `timestamp`, ...).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iris_tools.cloudrun.errors import InvalidArgument
from iris_tools.cloudrun.log_shipper import segments
from iris_tools.google.timestamps import parse_timestamp, rfc3339

_SEGMENT = r'(?:[\w@/-]+|"[^"]*")'  # a field's part: a name, or a quoted key (labels."run.googleapis.com/x")
_TERM = re.compile(rf'^\s*({_SEGMENT}(?:\.{_SEGMENT})*)\s*(>=|<=|!=|=|>|<|:)\s*"?(.*?)"?\s*$')
_PARTS = re.compile(r'"([^"]*)"|([\w@/-]+)')
SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
MAX_PAGE = 1000


def parse_filter(text: str) -> list[tuple[str, str, str]]:
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = _TERM.match(part.strip("() "))
        if not match:
            raise InvalidArgument.field("filter", f"cannot read {part!r}: terms are field OP \"value\" joined by AND")
        terms.append(match.groups())
    return terms


def _value(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for quoted, plain in _PARTS.findall(path):
        key = quoted or plain
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _matches(entry: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for field, op, wanted in terms:
        value = _value(entry, field)
        if value is None:
            return False
        if field == "severity":
            left, right = SEVERITIES.index(str(value)), SEVERITIES.index(wanted) if wanted in SEVERITIES else -1
        elif field in ("timestamp", "receiveTimestamp"):
            left, right = _seconds(str(value)), _seconds(wanted)
        else:
            left, right = str(value), wanted
        if op == ":":
            if wanted not in str(value):
                return False
        elif not {"=": left == right, "!=": left != right, ">": left > right, ">=": left >= right, "<": left < right,
                  "<=": left <= right}[op]:
            return False
    return True


def _seconds(text: str) -> float:
    try:
        return parse_timestamp(text)
    except ValueError:
        raise InvalidArgument.field("filter", f"{text!r} is not an RFC 3339 timestamp") from None


def entries(log_dir: Path, revisions: dict[str, str], project: str, region: str,
            job_logs: list[tuple[Path, dict[str, str]]] = ()) -> Iterator[dict[str, Any]]:
    """Every log entry of every revision (revision -> service), oldest first within a revision; then every job
    task attempt's (its log file and its labels: job, execution, task_index, task_attempt)."""
    for revision, service in sorted(revisions.items()):
        active = log_dir / f"{revision}.log"
        resource = {"type": "cloud_run_revision", "labels": {
            "project_id": project, "location": region, "service_name": service, "revision_name": revision,
            "configuration_name": service}}
        for segment, path in [*segments(active), (None, active)]:  # rotated segments, oldest first, then the log
            try:
                text = path.read_text(errors="replace")
                fallback = rfc3339(path.stat().st_mtime)
            except FileNotFoundError:  # rotated or deleted since it was listed
                continue
            prefix = revision if segment is None else f"{revision}.{segment}"
            yield from _entries(text, fallback, prefix, resource, {}, project)
    for path, task in job_logs:
        try:
            text = path.read_text(errors="replace")
            fallback = rfc3339(path.stat().st_mtime)
        except FileNotFoundError:
            continue
        resource = {"type": "cloud_run_job", "labels": {"project_id": project, "location": region,
                                                        "job_name": task["job"]}}
        labels = {"run.googleapis.com/execution_name": task["execution"],
                  "run.googleapis.com/task_index": task["task_index"],
                  "run.googleapis.com/task_attempt": task["task_attempt"]}
        yield from _entries(text, fallback, path.stem, resource, labels, project)


def _entries(text: str, fallback: str, prefix: str, resource: dict[str, Any], labels: dict[str, str], project: str
             ) -> Iterator[dict[str, Any]]:
    """One file's lines as entries (`prefix`: the file, for each entry's insertId). Every stdout entry carries a
    textPayload, the line as written, beside a structured line's jsonPayload: gcloud's `run services logs read` and
    `run jobs logs read` print only textPayload and crash on an entry without one."""
    for number, line in enumerate(text.splitlines()):
        entry: dict[str, Any] = {
            "logName": f"projects/{project}/logs/run.googleapis.com%2Fstdout",
            "resource": copy.deepcopy(resource), "insertId": f"{prefix}-{number}", "severity": "DEFAULT",
            "timestamp": fallback, "textPayload": line,
        }
        if labels:
            entry["labels"] = dict(labels)
        try:
            payload = json.loads(line)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            entry["severity"] = str(payload.pop("severity", "DEFAULT")).upper()
            if payload.get("time"):
                entry["timestamp"] = payload.pop("time")
            if isinstance(payload.get("httpRequest"), dict):
                entry["httpRequest"] = payload.pop("httpRequest")
            found = payload.pop("logging.googleapis.com/labels", None)
            if isinstance(found, dict):
                entry["labels"] = {**entry.get("labels", {}), **found}
            trace = payload.pop("logging.googleapis.com/trace", None)
            if isinstance(trace, str):
                entry["trace"] = trace
            entry["jsonPayload"] = payload
        entry["receiveTimestamp"] = entry["timestamp"]
        yield entry


def list_entries(log_dir: Path, revisions: dict[str, str], project: str, region: str,
                 body: dict[str, Any], job_logs: list[tuple[Path, dict[str, str]]] = ()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument.field("body", "expected an object")
    terms = parse_filter(str(body.get("filter", "")))
    size = body.get("pageSize", 50)
    if type(size) is not int or not 0 < size <= MAX_PAGE:
        raise InvalidArgument.field("pageSize", f"must be an integer from 1 to {MAX_PAGE}")
    newest_first = str(body.get("orderBy", "timestamp asc")).strip().lower().endswith("desc")
    found = [entry for entry in entries(log_dir, revisions, project, region, job_logs) if _matches(entry, terms)]
    found.sort(key=lambda entry: entry["timestamp"])
    if newest_first:  # lines of one time (a file's plain lines share its time): the later line first too
        found.reverse()
    try:
        offset = int(body.get("pageToken") or 0)
    except ValueError:
        raise InvalidArgument.field("pageToken", "not a token this server gave") from None
    page = found[offset:offset + size]
    result: dict[str, Any] = {"entries": page}
    if offset + size < len(found):
        result["nextPageToken"] = str(offset + size)
    return result
