"""Real functions-framework processes, started with the README's command, over HTTP."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.helpers import MODEL_DIRS, ROOT, TUTORIAL_ANSWERS, free_port, iris_xy
from tests.system.servers import function_command, function_server

pytestmark = pytest.mark.system


@pytest.mark.parametrize("name, answer", TUTORIAL_ANSWERS.items())
def test_each_version_answers_the_tutorial_request_over_http(name: str, answer: str) -> None:
    source = Path("functions") / name / "main.py"  # relative, from the repository root
    with function_server(source, free_port(), K_SERVICE="iris", K_REVISION=f"iris-{name}-1") as url:
        response = requests.get(f"{url}/?length=5.8&width=3.4", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"predicted_class": answer, "sepal_length": 5.8, "sepal_width": 3.4,
                                   "model": name, "revision": f"iris-{name}-1"}
        assert requests.get(f"{url}/metadata", timeout=5).json()["serving"]["service"] == "iris"


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=[p.name for p in MODEL_DIRS])
def test_a_full_batch_and_bad_input_over_http(model_dir: Path) -> None:
    X, _ = iris_xy()
    with function_server(model_dir / "main.py", free_port()) as url:
        rows = (X.tolist() * 67)[:10_000]  # the default MAX_BATCH_ROWS
        response = requests.post(url, json={"instances": rows}, timeout=30)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 10_000

        too_many = requests.post(url, json={"instances": rows + rows[:1]}, timeout=30)
        assert (too_many.status_code, too_many.json()["code"]) == (413, "batch_too_large")

        huge = requests.post(url, data=b" " * (5 * 1024 * 1024), headers={"Content-Type": "application/json"}, timeout=30)
        assert (huge.status_code, huge.json()["code"]) == (413, "payload_too_large")

        malformed = requests.post(url, data=b"{", headers={"Content-Type": "application/json"}, timeout=5)
        assert (malformed.status_code, malformed.json()["field"]) == (400, "body")

        wrong_method = requests.delete(url, timeout=5)
        assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "GET, POST")

        # The server is still whole after all of that.
        assert requests.get(f"{url}/?length=5.8&width=3.4", timeout=5).status_code == 200


def refusal_to_start(version: Path) -> str:
    """Start the version's function; it must exit at once, without a traceback. Returns its stderr."""
    result = subprocess.run(function_command(version / "main.py", free_port()), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_tampered_artifact_stops_the_server_at_start_with_the_failed_check(tmp_path: Path) -> None:
    version = shutil.copytree(ROOT / "functions" / "svc", tmp_path / "svc")
    (version / "model.joblib").write_bytes((version / "model.joblib").read_bytes() + b"\0")
    message = refusal_to_start(version)
    assert "refusing to serve model 'svc': SHA-256 check failed" in message
    assert "retrain with `make models`" in message


def test_an_artifact_from_another_scikit_learn_stops_the_server_at_start(tmp_path: Path) -> None:
    version = shutil.copytree(ROOT / "functions" / "lin_svc", tmp_path / "lin_svc")
    manifest = (version / "model.json").read_text()
    (version / "model.json").write_text(manifest.replace('"sklearn_version": "', '"sklearn_version": "0.'))
    message = refusal_to_start(version)
    assert "scikit-learn version check failed" in message
    assert "pip install scikit-learn==0." in message


def test_a_tampered_decision_rule_stops_the_server_at_start(tmp_path: Path) -> None:
    version = shutil.copytree(ROOT / "functions" / "svc", tmp_path / "svc")
    rule = (version / "model.rule.json").read_text()
    (version / "model.rule.json").write_text(rule.replace('"intercepts": [', '"intercepts": [1.0, ', 1))
    assert "SHA-256 check failed" in refusal_to_start(version) and "decision rule" in refusal_to_start(version)


@pytest.mark.parametrize("path", ["/", "/v2/models/svc/infer"])
def test_a_chunked_body_over_the_limit_is_413_and_the_server_stays_whole(path: str) -> None:
    def chunks(count: int):
        for _ in range(count):
            yield b" " * 1000

    with function_server(ROOT / "functions" / "svc" / "main.py", free_port(), MAX_REQUEST_BYTES="5000") as url:
        headers = {"Content-Type": "application/json"}
        over = requests.post(url + path, data=chunks(1000), headers=headers, timeout=30)  # 1 MB, no length
        assert over.request.headers["Transfer-Encoding"] == "chunked"
        assert (over.status_code, over.json()["code"]) == (413, "payload_too_large")
        under = requests.post(url + path, data=chunks(3), headers=headers, timeout=30)
        assert under.status_code == 400  # read whole, and found to be no JSON document
        assert requests.get(f"{url}/?length=5.8&width=3.4", timeout=5).status_code == 200
