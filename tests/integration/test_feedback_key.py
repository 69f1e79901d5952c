"""`make feedback-key` makes the key once (mode 0600 under RUN_DIR) and prints the flag a deploy takes; ROTATE=1
keeps the key before as the previous one; `make sign-feedback BODY=...` prints a header the service accepts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

SVC = ROOT / "functions" / "svc"


def tool(run_dir: Path, *args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "FEEDBACK_KEY"}
    return subprocess.run([sys.executable, "-m", "iris_tools.quality", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**env, "RUN_DIR": str(run_dir), **environment})


def test_the_key_is_made_once_kept_private_and_rotated_on_request(tmp_path: Path) -> None:
    made = tool(tmp_path, "feedback-key")
    assert made.returncode == 0, made.stderr
    path = tmp_path / "feedback-key"
    key = path.read_text().strip()
    assert len(key) == 64 and key in made.stdout and f"--set-env-vars FEEDBACK_KEY={key}" in made.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = tool(tmp_path, "feedback-key")
    assert again.returncode == 0 and path.read_text().strip() == key and again.stdout.startswith("kept")
    rotated = tool(tmp_path, "feedback-key", "--rotate")
    new = path.read_text().strip()
    assert new != key and (tmp_path / "feedback-key.previous").read_text().strip() == key
    assert f"FEEDBACK_KEY={new},FEEDBACK_KEY_PREVIOUS={key}" in rotated.stdout


def test_a_signed_header_from_the_tool_is_accepted_and_a_body_that_is_not_json_is_refused(tmp_path: Path,
                                                                                           client_for) -> None:
    tool(tmp_path, "feedback-key")
    key = (tmp_path / "feedback-key").read_text().strip()
    body = '{"id": "r1", "label": "setosa"}'
    signed = tool(tmp_path, "sign", BODY=body)
    assert signed.returncode == 0, signed.stderr
    header = signed.stdout.splitlines()[0].split(": ", 1)[1]
    assert "curl -X POST http://localhost:5001/feedback" in signed.stdout
    client = client_for(SVC, FEEDBACK_KEY=key)
    answer = client.post("/feedback", data=body, headers={"Content-Type": "application/json",
                                                          "X-Feedback-Signature": header})
    assert answer.status_code == 200, answer.get_json()
    assert client_for(SVC).post("/feedback", data=body, headers={  # the tests' own key: another one
        "Content-Type": "application/json", "X-Feedback-Signature": header}).status_code == 401
    refused = tool(tmp_path, "sign", BODY="not json")
    assert refused.returncode != 0 and "not JSON" in refused.stderr


def test_with_no_key_the_labelled_load_refuses_before_sending_and_says_how(tmp_path: Path) -> None:
    refused = tool(tmp_path, "load", LOAD_URL="http://127.0.0.1:9", LOAD_SECONDS="1")
    assert refused.returncode != 0 and "make feedback-key" in refused.stderr
