import json
import logging

from shared.logs import log_to_stdout


def test_log_records_become_one_json_line_on_stdout(capsys) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        log_to_stdout()
        logging.getLogger("shared.function").info("serving %s", "svc", extra={"fields": {"model": "svc"}})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = capsys.readouterr().out.strip()
    assert json.loads(line) == {"severity": "INFO", "message": "serving svc", "logger": "shared.function", "model": "svc"}
