import pytest

from shared.config import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_REQUEST_BYTES, ServerSettings, Settings
from shared.errors import ConfigError


def test_defaults_apply_when_nothing_is_set() -> None:
    assert Settings.from_env({}) == Settings(None, None, None, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_REQUEST_BYTES)


def test_cloud_run_contract_variables_are_read() -> None:
    settings = Settings.from_env({"K_SERVICE": "iris", "K_REVISION": "iris-00002-lin", "K_CONFIGURATION": "iris",
                                  "MAX_BATCH_ROWS": "50", "MAX_REQUEST_BYTES": "2048"})
    assert settings == Settings("iris", "iris-00002-lin", "iris", 50, 2048)


@pytest.mark.parametrize("name, value", [("MAX_BATCH_ROWS", "lots"), ("MAX_BATCH_ROWS", "0"), ("MAX_REQUEST_BYTES", "-1"),
                                         ("PREDICTOR_PROCESS", "yes"), ("PREDICTOR_PROCESS", "2")])
def test_unusable_limits_stop_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_predictor_process_is_switched_by_1_and_0() -> None:
    assert Settings.from_env({"PREDICTOR_PROCESS": "0"}).predictor_process is False
    assert Settings.from_env({"PREDICTOR_PROCESS": "1"}).predictor_process is True


def test_the_server_settings_default_to_the_cloud_run_contract() -> None:
    assert ServerSettings.from_env({}) == ServerSettings(8080, "0.0.0.0", 8, "predict", "main.py")
    assert ServerSettings.from_env({"PORT": "9090", "GRACEFUL_TIMEOUT_S": "0"}).port == 9090


@pytest.mark.parametrize("name, value, says", [("PORT", "eighty", "is not an integer"), ("PORT", "70000", "at most 65535"),
                                               ("PORT", "0", "at least 1"), ("GRACEFUL_TIMEOUT_S", "-1", "at least 0")])
def test_bad_server_settings_name_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}=.*{says}"):
        ServerSettings.from_env({name: value})


def test_the_server_refuses_a_bad_port_with_a_message_not_a_traceback() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "shared.server"], env={"PORT": "http", "PATH": "/usr/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "refusing to start: PORT='http' is not an integer; unset it to use 8080"
