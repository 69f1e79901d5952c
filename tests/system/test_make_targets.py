"""The README's user story through make: versions side by side, compared, stopped."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.system


def make(*args: str, run_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RUN_DIR": str(run_dir)})


def port_answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def comparison_row(output: str, length: str, width: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if cells[:2] == [length, width]:
            return cells
    raise AssertionError(f"no row for {length},{width} in:\n{output}")


def test_up_compare_stop_runs_both_versions_side_by_side(tmp_path: Path) -> None:
    svc, lin_svc = free_port(), free_port()
    ports = f"PORTS=svc={svc} lin_svc={lin_svc}"
    try:
        started = make("up", ports, run_dir=tmp_path)
        assert started.returncode == 0, started.stderr
        # Columns follow the ports: svc first. At the test point they disagree.
        header = next(line for line in started.stdout.splitlines() if line.startswith("length"))
        assert header.split() == ["length", "width", "svc", "lin_svc"]
        assert comparison_row(started.stdout, "5.8", "3.4") == ["5.8", "3.4", "versicolor", "setosa", "<-", "differ"]

        assert requests.get(f"http://127.0.0.1:{svc}/?length=5.8&width=3.4", timeout=5).json()["revision"] == "iris-svc-local"

        compared = make("compare", "POINT=5.8,3.4 7,3", run_dir=tmp_path)
        assert compared.returncode == 0, compared.stderr
        assert comparison_row(compared.stdout, "7", "3") == ["7", "3", "virginica", "virginica", "same"]
        assert "1 of 2 point(s) answered differently" in compared.stdout

        again = make("up", ports, run_dir=tmp_path)
        assert again.returncode != 0
        assert f"already running: svc on {svc}, lin_svc on {lin_svc}; stop them first" in again.stderr
    finally:
        stopped = make("stop", run_dir=tmp_path)
    assert stopped.returncode == 0
    assert "stopped svc" in stopped.stdout and "stopped lin_svc" in stopped.stdout
    assert not port_answers(svc) and not port_answers(lin_svc)
    assert list(tmp_path.rglob("*.json")) == []


def test_compare_takes_any_urls(tmp_path: Path) -> None:
    """And the versions `make up` starts take labels signed with the key `make feedback-key` made, and only those."""
    from tests.helpers import signed

    port = free_port()
    try:
        assert make("feedback-key", run_dir=tmp_path).returncode == 0
        assert make("up", f"PORTS=svc={port} lin_svc={free_port()}", run_dir=tmp_path).returncode == 0
        url = f"http://127.0.0.1:{port}"
        answer_id = requests.get(f"{url}/?length=5.8&width=3.4", timeout=5).headers["X-Answer-Id"]
        key = (tmp_path / "feedback-key").read_text().strip()
        data, headers = signed({"id": answer_id, "label": "versicolor"}, key=key)
        assert requests.post(f"{url}/feedback", data=data, headers=headers, timeout=5).json() == {"accepted": 1}
        unsigned = requests.post(f"{url}/feedback", data=data, headers={"Content-Type": "application/json"}, timeout=5)
        assert unsigned.status_code == 401
        compared = make("compare", "POINT=5.8,3.4", f"URLS=old={url} new={url}", run_dir=tmp_path)
        assert compared.returncode == 0, compared.stderr
        assert comparison_row(compared.stdout, "5.8", "3.4") == ["5.8", "3.4", "versicolor", "versicolor", "same"]
    finally:
        make("stop", run_dir=tmp_path)


def test_a_taken_port_is_reported_with_the_variable_that_changes_it(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = make("up", f"PORTS=svc={taken} lin_svc={free_port()}", run_dir=tmp_path)
    assert result.returncode != 0
    assert f"port {taken} (for svc) already in use" in result.stderr
    assert "PORTS=" in result.stderr
    assert list(tmp_path.rglob("*.json")) == []


def test_compare_with_nothing_running_says_how_to_start(tmp_path: Path) -> None:
    result = make("compare", run_dir=tmp_path)
    assert result.returncode != 0 and "make demo" in result.stderr


def test_demo_serves_until_ctrl_c_then_stops_everything(tmp_path: Path) -> None:
    svc, lin_svc = free_port(), free_port()
    demo = subprocess.Popen(["make", "-s", "demo", f"PORTS=svc={svc} lin_svc={lin_svc}"], cwd=ROOT,
                            env={**os.environ, "RUN_DIR": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = []
    try:
        for line in demo.stdout:
            output.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(output)
        assert comparison_row(text, "5.8", "3.4")[2:4] == ["versicolor", "setosa"]
        assert port_answers(svc) and port_answers(lin_svc)
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        rest = demo.communicate(timeout=30)[0]
        assert "\nstopped\n" in rest, rest
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        demo.stdout.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (port_answers(svc) or port_answers(lin_svc)):
        time.sleep(0.1)
    assert not port_answers(svc) and not port_answers(lin_svc)
    assert list(tmp_path.rglob("*.json")) == []


def test_help_is_the_default_goal_and_lists_the_two_readme_commands() -> None:
    result = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert re.search(r"make demo\s", result.stdout) and re.search(r"make test\s", result.stdout)
