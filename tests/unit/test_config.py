import pytest

from shared.config import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_REQUEST_BYTES, Settings
from shared.errors import ConfigError


def test_defaults_apply_when_nothing_is_set() -> None:
    assert Settings.from_env({}) == Settings(None, None, None, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_REQUEST_BYTES)


def test_cloud_run_contract_variables_are_read() -> None:
    settings = Settings.from_env({"K_SERVICE": "iris", "K_REVISION": "iris-00002-lin", "K_CONFIGURATION": "iris",
                                  "MAX_BATCH_ROWS": "50", "MAX_REQUEST_BYTES": "2048"})
    assert settings == Settings("iris", "iris-00002-lin", "iris", 50, 2048)


@pytest.mark.parametrize("name, value", [("MAX_BATCH_ROWS", "lots"), ("MAX_BATCH_ROWS", "0"), ("MAX_REQUEST_BYTES", "-1")])
def test_unusable_limits_stop_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})

