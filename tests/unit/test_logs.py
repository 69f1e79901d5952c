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


def test_the_prediction_log_writer_writes_whole_lines_in_pipe_atomic_chunks(monkeypatch) -> None:
    """On a pipe, a write of at most PIPE_BUF bytes is never interleaved with another writer's; a batch
    goes out as such writes, each ending at the end of a line. Broken on purpose (one write per batch),
    it fails: the 100 lines went out in one 30,100-byte write."""
    import os

    from shared import prediction_log

    read_end, write_end = os.pipe()
    sizes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(prediction_log.os, "write", lambda fd, data: sizes.append(bytes(data)) or real_write(fd, data))
    writer = prediction_log.LineWriter(write_end)
    lines = [f'{{"n":{i},"pad":"{"x" * 280}"}}\n' for i in range(100)]
    writer._pending.extend(lines)  # all queued at once (one call on a deque), whichever thread then writes them
    writer.flush()
    os.close(write_end)
    received = b""
    while chunk := os.read(read_end, 65536):
        received += chunk
    os.close(read_end)
    assert received.decode() == "".join(lines)
    assert len(sizes) > 1 and all(len(data) <= prediction_log.PIPE_BUF and data.endswith(b"\n") for data in sizes)
