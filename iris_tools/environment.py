"""Every environment variable the tools read, declared once: its name, type, default, unit and help.

A tool parses the variables it uses once, at start (`read(environ, *groups)`): a bad value is refused with
the variable's name and what it takes, before anything happens. `value(name)` parses one variable where a
module needs it later (RUN_DIR, which tests set after import). The same table prints the tools' `--help`
section, docs/settings.md and `make help`'s list:

    python -m iris_tools.environment [--markdown | --make]

Variables of the serving runtime itself (PORT, K_SERVICE, ...) are shared/config.py's: the images carry them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("cloudrun", "local")


class SettingError(ValueError):
    """A variable holds a value the tools cannot use; the message names it and says what it takes."""


@dataclass(frozen=True)
class ByTarget:
    """A default that differs between Cloud Run and the local Cloud Run."""

    cloudrun: Any
    local: Any

    def text(self) -> str:
        return f"{_shown(self.local)} locally, {_shown(self.cloudrun)} on Cloud Run"


@dataclass(frozen=True)
class Variable:
    name: str
    group: str
    parse: Callable[[str], Any]  # the raw text (never empty) -> its value, or ValueError saying what it takes
    default: Any
    help: str
    unit: str = ""
    default_text: str = ""  # how a derived default reads ("3 x STEP_SECONDS")

    def default_for(self, target: str) -> Any:
        return getattr(self.default, target) if isinstance(self.default, ByTarget) else self.default

    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        return self.default.text() if isinstance(self.default, ByTarget) else _shown(self.default)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if value is True or value is False:
        return "1" if value else "unset"
    return str(value)


# ---------------------------------------------------------------- kinds of value


def text(raw: str) -> str:
    return raw


def number(low: float | None = 0.0, high: float | None = None, *, below_high: bool = False,
           what: str = "") -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("is not a finite number")
        if low is not None and value < low and high is None:
            raise ValueError("must not be negative" if low == 0 else f"must be {low:g} or more")
        if (low is not None and value < low) or (high is not None and (value >= high if below_high else value > high)):
            raise ValueError(what or f"must be from {low:g} to {high:g}")
        return value
    return parse


def whole(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if value < low:
            raise ValueError("must not be negative" if low == 0 else f"must be {low} or more")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}")
        return value
    return parse


def flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError("is 1 (or true, yes) or 0 (or false, no)")


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"use one of {', '.join(options)}")
        return raw
    return parse


def path(raw: str) -> Path:
    return Path(raw)


def plan(raw: str) -> Plan:
    return Plan.parse(raw)


def port(raw: str) -> int:
    return whole(0, 65535)(raw)


def service_name(raw: str) -> str:
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", raw):
        raise ValueError("is not a Cloud Run service name (lower-case letters, digits and -, from a letter)")
    return raw


# ---------------------------------------------------------------- the table

VARIABLES: tuple[Variable, ...] = (
    # Which Cloud Run, which service
    Variable("TARGET", "target", choice(*TARGETS), "cloudrun",
             "cloudrun: Cloud Run through your gcloud configuration; local: the local Cloud Run (make emulator)"),
    Variable("SERVICE", "target", service_name, "iris", "the Cloud Run service"),
    Variable("PROJECT", "target", text, None, "Google Cloud project passed to gcloud (unset: the configuration's; "
             "the local Cloud Run's own: iris-local)"),
    Variable("REGION", "target", text, None, "Cloud Run region passed to gcloud (unset: the configuration's; "
             "the local Cloud Run's own: us-central1)"),
    Variable("IMAGE", "target", text, "iris", "image name without its tag: MODEL=svc deploys $IMAGE:svc"),
    Variable("API_TIMEOUT_S", "target", number(low=0.001), 60.0, "an Admin or Monitoring API call that does not "
             "answer in this long has failed", "s"),
    Variable("GCLOUD", "target", text, None, "the gcloud binary (unset: gcloud on PATH, else /usr/bin/gcloud)"),
    Variable("RUN_DIR", "target", path, ROOT / ".run", "where the tools keep state, logs, records and reports",
             default_text=".run"),
    # The rollout
    Variable("MODEL", "rollout", text, None, "the candidate by model: deploys $IMAGE:<MODEL> with no traffic"),
    Variable("REVISION", "rollout", text, None, "the candidate by revision name (instead of MODEL)"),
    Variable("SPLIT", "rollout", text, None, 'make traffic: the split to set, by model or revision '
             '("svc=90 lin_svc=10", adding to 100)'),
    Variable("STEPS", "rollout", plan, "5 25 50 100", 'candidate percentages ending at 100; "pause" after a step '
             'holds there until make promote ("5 25 pause 50 100")', "%"),
    Variable("STEP_SECONDS", "rollout", number(), ByTarget(600.0, 10.0), "judged time each step lasts", "s"),
    Variable("MIN_REQUESTS", "rollout", whole(), ByTarget(100, 50), "candidate requests a step needs before it can "
             "pass", "requests"),
    Variable("MAX_HOLD_SECONDS", "rollout", number(), None, "how long a step short of requests or figures holds "
             "before it rolls back", "s", default_text="3 x STEP_SECONDS"),
    Variable("MAX_ERROR_RATE", "rollout", number(0.0, 1.0, what="a fraction from 0 to 1"), 0.01,
             "highest candidate 5xx rate", "fraction"),
    Variable("MAX_LATENCY_RATIO", "rollout", number(low=1.0), 2.0, "a p99 breach is above this many times the "
             "stable p99 ...", "x"),
    Variable("MIN_LATENCY_DELTA_MS", "rollout", number(), 5.0, "... and above the stable p99 by this much", "ms"),
    Variable("CONFIDENCE", "rollout", number(0.5, 1.0, below_high=True, what="a fraction from 0.5 to below 1"), 0.99,
             "1 - CONFIDENCE is the chance a candidate within the limits is rolled back, shared over the steps",
             "fraction"),
    Variable("MONITORING_DELAY_S", "rollout", number(), ByTarget(180.0, 0.0), "how late figures arrive (Cloud "
             "Monitoring lags)", "s"),
    Variable("METRIC_RESOLUTION_S", "rollout", number(), ByTarget(60.0, 2.0), "how coarse figures are in time: "
             "a step's first this-many seconds are not judged", "s"),
    Variable("POLL_SECONDS", "rollout", number(low=0.01), ByTarget(30.0, 1.0), "how often figures are read", "s"),
    Variable("MAX_ACCURACY_DROP", "rollout", number(0.0, 1.0, what="a fraction from 0 to 1"), 0.02, "with LABELS: "
             "the most the candidate's accuracy may fall below the stable one's", "fraction"),
    Variable("MAX_MIX_SHIFT", "rollout", number(0.0, 1.0, what="a fraction from 0 to 1"), 0.10, "with LABELS: the "
             "most the candidate's prediction mix may move from the stable one's (total variation)", "fraction"),
    Variable("MAX_ERROR_INCREASE", "rollout", number(0.0, 10.0, what="a fraction from 0 to 10"), 0.05, "with LABELS, "
             "a regressor: the most the candidate's mean absolute error may exceed the stable one's (relative: 0.05 "
             "is 5%)", "fraction"),
    Variable("MAX_PREDICTION_SHIFT", "rollout", number(0.0, 1.0, what="a fraction from 0 to 1"), 0.10, "with LABELS, "
             "a regressor: the most its predicted values may move from the stable ones' (Kolmogorov-Smirnov "
             "distance)", "fraction"),
    Variable("MIN_LABELS", "rollout", whole(1), 50, "with LABELS: labels each revision needs in a step before its "
             "accuracy (a regressor's error) can pass", "labels"),
    Variable("LABEL_WAIT_S", "rollout", number(), ByTarget(3600.0, 30.0), "with LABELS: how long a step waits for "
             "labels after its window before it pauses for a person (make promote or make rollback)", "s"),
    Variable("FORCE", "rollout", flag, False, "give traffic to a revision (or image) that was rolled back before"),
    Variable("PUBLIC", "rollout", flag, False, "grant allUsers the invoker role when deploying (unset: the "
             "service keeps its policy)"),
    Variable("SERVICE_ACCOUNT", "rollout", text, None, "the candidate's service account (unset: the project's "
             "default)"),
    Variable("WARMUP_REQUESTS", "rollout", whole(), 20, "predictions sent to the candidate's tag URL before its "
             "first live step (0: none)", "requests"),
    Variable("ROLLBACK_WINDOW", "rollout", number(), ByTarget(900.0, 120.0), "after a promotion, how long the "
             "revision users left is kept warm so that a rollback meets no cold start (0: not kept)", "s"),
    Variable("NOTIFY_URL", "rollout", text, None, "where each step passed, hold, pause, promotion, rollback and "
             "failure is POSTed as JSON (a text field: a Slack or Google Chat incoming webhook shows it); unset: none"),
    Variable("DETACH", "rollout", flag, False, "make rollout: run the rollout as a Cloud Run job beside the service "
             "(<SERVICE>-rollout, image TOOLS_IMAGE) and return; make rollout-status follows it"),
    Variable("TOOLS_IMAGE", "rollout", text, None, "with DETACH: the tools image the job runs", default_text=
             "$IMAGE-tools:<version>, what make images builds"),
    Variable("TASK_TIMEOUT_S", "rollout", number(low=10.0), ByTarget(86400.0, 3600.0), "with DETACH: the job's "
             "task timeout; the rollout puts 100% back on the stable revision before it", "s"),
    Variable("TASK_RETRIES", "rollout", whole(0, 10), 3, "with DETACH: how often the job's task is started again "
             "after it dies; each retry resumes the rollout from the service's record"),
    Variable("JOB_SERVICE_ACCOUNT", "rollout", text, None, "with DETACH: the job's service account (unset: the "
             "project's default; docs/cloud-run.md lists the roles it needs)"),
    Variable("MIN_AGREEMENT", "rollout", number(0.0, 1.0, what="a fraction from 0 to 1"), None, "gate the first "
             "live step on a shadow comparison: the least agreement (unset: no shadow)", "fraction"),
    Variable("SHADOW_INPUTS", "rollout", whole(1), 500, "how many recent stable inputs the shadow replays",
             "inputs"),
    Variable("SHADOW_FRESHNESS", "rollout", text, "1h", "how far back the shadow reads them (gcloud's duration: "
             "30m, 1h, 2d)"),
    # Outcomes: predictions joined to labels, and the labelled load
    Variable("LABELS", "quality", text, None, "where labels come from: feedback (the /feedback lines in the logs) "
             "or the path of an id,label CSV file; set, the rollout's gate judges accuracy and the mix too (make "
             "outcomes reads feedback when unset)"),
    Variable("PAIRED", "rollout", flag, True, "with LABELS: before any user moves, replay the stable revision's "
             "labelled inputs (SHADOW_INPUTS of the last SHADOW_FRESHNESS) to the candidate and roll it back if it is "
             "worse on them (paired test, half the gate's error budget); 0 leaves the judgement to the live steps"),
    Variable("OUTCOMES_TABLE", "quality", text, None, "on Cloud Run: the BigQuery dataset (project.dataset) a "
             "Cloud Logging sink fills with the service's prediction and feedback lines (default: "
             "<PROJECT>.iris_outcomes, what make outcomes-sink makes); locally the store reads the revisions' logs"),
    Variable("OUTCOME_FRESHNESS", "quality", text, "1h", "how far back predictions and labels are read (gcloud's "
             "duration: 30m, 1h, 2d)"),
    Variable("FEEDBACK_KEY", "quality", text, None, "the key labels posted to /feedback are signed with (the "
             "labelled load, make sign-feedback); the service takes the same one (unset: the key make feedback-key "
             "keeps in RUN_DIR/feedback-key)"),
    Variable("LOAD_URL", "quality", text, None, "the service URL the labelled load calls (make labelled-load)"),
    Variable("LOAD_CSV", "quality", text, None, "rows of your own model's features with a label column, replayed "
             "by the labelled load instead of iris points (a number label: a regressor's true value)"),
    Variable("LOAD_SECONDS", "quality", number(low=0.1), 30.0, "how long the labelled load sends", "s"),
    Variable("LOAD_RATE", "quality", number(low=0.1), 20.0, "requests the labelled load sends a second",
             "requests/s"),
    Variable("LABEL_DELAY_S", "quality", number(), 2.0, "how long after an answer its true label is posted", "s"),
    Variable("LOAD_JITTER", "quality", number(), 0.1, "noise added to each iris point, as a fraction of each "
             "feature's spread", "fraction"),
    Variable("LOAD_TOKEN", "quality", text, None, "bearer token for a private service (locally: make -s "
             "emulator-token)"),
    # The console
    Variable("CONSOLE_PORT", "console", port, 5080, "the console's port on 127.0.0.1 (0 picks a free one)"),
    Variable("CONSOLE_PERIOD_S", "console", number(low=0.1), ByTarget(60.0, 2.0), "the charts' point width "
             "(Cloud Monitoring aligns to a minute at the finest)", "s"),
    # The local Cloud Run
    Variable("RUNTIME", "emulator", choice("process", "docker"), "process", "how revisions and make up run model "
             "versions: processes, or containers of $IMAGE:<model>"),
    Variable("LOG_MAX_MB", "emulator", number(low=0.01), 64.0, "a revision's log is rotated (renamed <revision>.log.<n>) "
             "at this size; the outcome store deletes the rotated segments it has read, beyond LOG_KEEP_FILES", "MB"),
    Variable("LOG_KEEP_FILES", "emulator", whole(0), 4, "rotated segments of a revision's log kept once read (for "
             "gcloud logging read); a segment not yet read is never deleted"),
    Variable("CLOUDRUN_PORT", "emulator", port, None, "the local Admin API's port (unset: the last one if free, "
             "else a free one)"),
    Variable("CLOUDRUN_HOLD_S", "emulator", number(), 30.0, "how long a request to a revision that is not "
             "serving is held before a 503 (never past its --timeout)", "s"),
    Variable("CLOUDRUN_MONITORING", "emulator", choice("exact", "cloudrun"), "exact", "exact: figures of exactly "
             "the window asked; cloudrun: as Cloud Monitoring answers (aligned points, a delay, pages)"),
    Variable("CLOUDRUN_MONITORING_ALIGN_S", "emulator", number(low=1.0), 60.0, "with CLOUDRUN_MONITORING=cloudrun: "
             "the points' width", "s"),
    Variable("CLOUDRUN_MONITORING_DELAY_S", "emulator", number(), 180.0, "with CLOUDRUN_MONITORING=cloudrun: how "
             "late points appear", "s"),
    Variable("CLOUDRUN_MONITORING_PAGE_SIZE", "emulator", whole(1), 2, "with CLOUDRUN_MONITORING=cloudrun: "
             "series per page", "series"),
    # Local side-by-side runs
    Variable("IRIS_FUNCTIONS_DIR", "local", path, ROOT / "functions", "where model versions live "
             "(<dir>/<model>/main.py)", default_text="functions"),
    Variable("SERVICE_NAME", "local", text, "iris", "K_SERVICE given to the versions make up runs"),
    Variable("READY_TIMEOUT_S", "local", number(low=0.1), 60.0, "how long make up waits for a version to answer",
             "s"),
    Variable("DOCKER", "local", text, "docker", "the docker client (the Makefile picks one that builds with "
             "BuildKit)"),
    Variable("IRIS_REAPER_DIR", "local", path, None, "set by the test suite: servers started under it are "
             "recorded there and stopped if the run is killed"),
)

BY_NAME = {variable.name: variable for variable in VARIABLES}
GROUPS = {"target": "Which Cloud Run", "rollout": "Rollout (make rollout, rollback, promote, traffic, shadow)",
          "quality": "Outcomes and the labelled load (make outcomes, make labelled-load)",
          "console": "Console (make console)", "emulator": "Local Cloud Run (make emulator)",
          "local": "Local side-by-side runs (make up, demo)"}


def _parse(variable: Variable, environ: Mapping[str, str], target: str) -> Any:
    raw = environ.get(variable.name, "")
    if raw.strip() == "":
        default = variable.default_for(target)
        return variable.parse(default) if isinstance(default, str) else default  # "5 25 50 100" -> a Plan
    try:
        return variable.parse(raw.strip())
    except ValueError as exc:
        raise SettingError(f"{variable.name}={raw!r} {exc}" if str(exc).startswith(("is ", "must "))
                           else f"{variable.name}={raw!r}: {exc}") from None


def target_of(environ: Mapping[str, str] = os.environ) -> str:
    return _parse(BY_NAME["TARGET"], environ, "cloudrun")


class Environment:
    """Parsed values of the variables of some groups; `env["STEP_SECONDS"]`."""

    def __init__(self, values: dict[str, Any], target: str, given: frozenset[str] = frozenset()) -> None:
        self._values = values
        self.target = target
        self.given = given  # the names set (not empty) in the environment, rather than defaulted

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(f"{name} was not read: add its group to read()")
        return self._values[name]


def read(environ: Mapping[str, str] = os.environ, *groups: str) -> Environment:
    """The variables of `groups` (and the target group), parsed now; SettingError names the first bad one."""
    target = target_of(environ)
    wanted = {"target", *groups}
    values = {v.name: _parse(v, environ, target) for v in VARIABLES if v.group in wanted}
    return Environment(values, target, frozenset(name for name in values if environ.get(name, "").strip()))


def value(name: str, environ: Mapping[str, str] = os.environ) -> Any:
    """One variable, parsed now (by the table's rules; defaults of the current TARGET)."""
    variable = BY_NAME[name]
    return _parse(variable, environ, target_of(environ) if isinstance(variable.default, ByTarget) else "cloudrun")


# ---------------------------------------------------------------- what the table prints


def help_text(*groups: str) -> str:
    lines = []
    for group, title in GROUPS.items():
        if groups and group not in groups:
            continue
        lines.append(f"{title}:")
        for v in (v for v in VARIABLES if v.group == group):
            unit = f" [{v.unit}]" if v.unit else ""
            lines.append(f"  {v.name:<22}{v.help}{unit} (default {v.shown_default()})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def markdown() -> str:
    out = ["# Settings", "",
           "Every environment variable the tools read, generated from `iris_tools/environment.py` "
           "(`python -m iris_tools.environment --markdown`). Set them on the make command line "
           "(`make rollout MODEL=lin_svc STEPS=\"10 100\"`) or in the environment. A bad value is refused at "
           "start, naming the variable. The serving runtime's own variables (`PORT`, `K_SERVICE`, ...) are in "
           "[api.md](api.md).", ""]
    for group, title in GROUPS.items():
        out += [f"## {title}", "", "| variable | default | unit | what it does |", "|---|---|---|---|"]
        for v in (v for v in VARIABLES if v.group == group):
            out.append(f"| `{v.name}` | {v.shown_default()} | {v.unit or '-'} | {v.help.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.environment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="docs/settings.md")
    parser.add_argument("--make", action="store_true", help="the names, one line (make help)")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
    elif args.make:
        for group, title in GROUPS.items():
            print(f"  {title}: " + " ".join(v.name for v in VARIABLES if v.group == group))
    else:
        print(help_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
