"""Every command answers a fault with one line that says what went wrong and what to do, never a traceback: with its
local Cloud Run down, and with each setting malformed or out of range (every variable of iris_tools/environment.py
that can be malformed, through the command that reads it)."""

from __future__ import annotations

import os
import subprocess

import pytest

from iris_tools import environment
from iris_tools.cloudrun.__main__ import main as emulator_main
from iris_tools.cloudrun.__main__ import write_gcloud_config
from iris_tools.console.__main__ import main as console_main
from iris_tools.google.targets import directories
from iris_tools.local.commands import main as local_main
from iris_tools.local.servers import free_port
from iris_tools.quality.__main__ import main as quality_main
from iris_tools.rollout.__main__ import main as rollout_main
from tests.helpers import ROOT

DOWN_COMMANDS = [("rollout", "MODEL=lin_svc"), ("traffic",), ("traffic", "SPLIT=svc=100"), ("rollback",),
                 ("promote",), ("shadow", "MODEL=lin_svc"), ("console", "CONSOLE_PORT=0"), ("outcomes",)]


def one_plain_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and "[Makefile:" not in line]  # make's own
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def stopped_run_dir(tmp_path_factory: pytest.TempPathFactory):
    """A local Cloud Run that was started once and is stopped now: its gcloud configuration is there and points at a
    port nobody listens on."""
    run_dir = tmp_path_factory.mktemp("stopped")
    write_gcloud_config(directories(run_dir)[1], "iris-local", "us-central1", free_port())
    return run_dir


@pytest.mark.cloudrun
@pytest.mark.parametrize("command", DOWN_COMMANDS, ids=lambda c: " ".join(c))
def test_each_command_with_the_local_cloud_run_down_says_to_start_it(stopped_run_dir, command: tuple) -> None:
    """Broken on purpose (the rollout CLI not catching ApiError, as before): `make rollout` and `make traffic` ended in
    a traceback of `URLError: Connection refused`."""
    env = {**os.environ, "TARGET": "local", "RUN_DIR": str(stopped_run_dir)}
    result = subprocess.run(["make", "-s", "--no-print-directory", *command], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    line = one_plain_line(result.stderr)
    if command[0] != "shadow":  # it reads the logs through gcloud, which says it in its own words
        assert "make emulator" in line, line


def malformed() -> list[tuple[str, str]]:
    """(variable, value) for every variable that can be malformed, plus values out of range."""
    found = [(v.name, "Not valid!") for v in environment.VARIABLES
             if v.parse not in (environment.text, environment.path)]
    return found + [("MAX_ERROR_RATE", "2"), ("CONFIDENCE", "1"), ("CONFIDENCE", "0.2"), ("MIN_AGREEMENT", "1.5"),
                    ("STEP_SECONDS", "-1"), ("MIN_REQUESTS", "-3"), ("MAX_LATENCY_RATIO", "0.5"),
                    ("CONSOLE_PORT", "70000"), ("SHADOW_INPUTS", "0"), ("STEPS", "50 25 100"), ("STEPS", "5 50"),
                    ("API_TIMEOUT_S", "0"), ("POLL_SECONDS", "nan"), ("READY_TIMEOUT_S", "0")]


def run_reading(group: str) -> int | str | None:
    """The command that reads `group`'s variables, in this process; its exit status (or SystemExit's message)."""
    try:
        if group in ("target", "rollout"):
            return rollout_main(["traffic"])
        if group == "console":
            return console_main()
        if group == "emulator":
            return emulator_main(["token"])
        if group == "quality":
            return quality_main(["outcomes"])
        return local_main(["status"])
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize("name, value", malformed(), ids=lambda x: str(x))
def test_a_malformed_or_out_of_range_setting_is_refused_naming_it(name: str, value: str, monkeypatch,
                                                                  capsys, tmp_path) -> None:
    """Broken on purpose (MAX_ERROR_RATE parsed as any number, as before): MAX_ERROR_RATE=2 was taken as it is."""
    monkeypatch.setenv("RUN_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    status = run_reading(environment.BY_NAME[name].group)
    stderr = capsys.readouterr().err
    text = status if isinstance(status, str) else one_plain_line(stderr)
    assert status not in (0, None) and f"{name}={value!r}" in text and "Traceback" not in stderr, (status, stderr)
