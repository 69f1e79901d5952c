"""The local outcome store: DuckDB over the local Cloud Run's revision logs, read incrementally.

Each look first takes in what the logs gained since the last look (a byte position per log file, kept by the file's
device and inode, so a file renamed by rotation is not read twice), then runs the one aggregate query
(quality/aggregate.py) over the store. The cost of a look is the new lines plus a scan of the window's rows (DuckDB
skips row groups outside it), never everything ever logged.

    RUN_DIR/outcomes/store.duckdb   predictions, labels, and the position read in each log file
    RUN_DIR/outcomes/store.lock     one process at a time takes lines in and queries (an flock; DuckDB files admit
                                    one writing process)

A line taken in and its file's new position are one transaction: a look stopped half-way takes nothing twice.
Lines that are not JSON objects (a server's own messages) are skipped, as are JSON lines of other kinds.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iris_tools.cli.failures import ToolError
from iris_tools.cloudrun.log_shipper import segments
from iris_tools.environment import value
from iris_tools.quality.aggregate import COLUMNS, LabelledAnswer, labelled_answers, moment, outcomes_of, query
from iris_tools.quality.outcomes import Outcomes, TrueLabel

CHUNK_BYTES = 64 << 20  # new bytes taken in per transaction
STORE_FORMAT = 4  # a store of another format is rebuilt from the logs (its tables dropped, every log read again)
SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions(service VARCHAR, revision VARCHAR, id VARCHAR, inputs VARCHAR,
                                       predicted_class VARCHAR, predicted_value DOUBLE, logged TIMESTAMPTZ,
                                       replayed BOOLEAN, confidence DOUBLE);
CREATE TABLE IF NOT EXISTS labels(service VARCHAR, id VARCHAR, label_class VARCHAR, label_value DOUBLE,
                                  logged TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS positions(device UBIGINT, inode UBIGINT, path VARCHAR, position UBIGINT,
                                     PRIMARY KEY (device, inode));
CREATE TABLE IF NOT EXISTS store_format(format INTEGER);
"""
LINE_COLUMNS = ("{'time': 'VARCHAR', 'kind': 'VARCHAR', 'service': 'VARCHAR', 'revision': 'VARCHAR', "
                "'answer_id': 'VARCHAR', 'rows': 'BIGINT', 'inputs': 'JSON', 'predictions': 'JSON[]', "
                "'labels': 'STRUCT(id VARCHAR, label JSON)[]', 'replay': 'VARCHAR', 'confidence': 'DOUBLE[]'}")
# A line's service: its own field, else the revision's name without Cloud Run's -NNNNN-xxx suffix.
SERVICE = "COALESCE(service, regexp_extract(revision, '^(.+)-[0-9]{5}-[a-z0-9]{3}$', 1), revision)"
SECONDS = "TRY_CAST(time AS TIMESTAMPTZ)"
NUMBER_TYPES = "('DOUBLE', 'BIGINT', 'UBIGINT')"
TAKE_PREDICTIONS = f"""
INSERT INTO predictions
SELECT {SERVICE}, revision, CASE WHEN rows = 1 AND len(predictions) = 1 THEN answer_id END,
       CASE WHEN rows = 1 AND len(predictions) = 1 THEN CAST(json_extract(inputs, '$[0]') AS VARCHAR) END,
       CASE WHEN json_type(answer) = 'VARCHAR' THEN answer ->> '$' END,
       CASE WHEN json_type(answer) IN {NUMBER_TYPES} THEN CAST(answer AS DOUBLE) END,
       {SECONDS}, replay IS NOT NULL,
       CASE WHEN rows = 1 AND len(predictions) = 1 THEN confidence[1] END
FROM (SELECT *, unnest(predictions) AS answer FROM new_lines
      WHERE kind = 'prediction' AND revision IS NOT NULL AND time IS NOT NULL)
"""
TAKE_LABELS = f"""
INSERT INTO labels
SELECT {SERVICE}, given.id,
       CASE WHEN json_type(given.label) = 'VARCHAR' THEN given.label ->> '$' END,
       CASE WHEN json_type(given.label) IN {NUMBER_TYPES} THEN CAST(given.label AS DOUBLE) END, {SECONDS}
FROM (SELECT service, revision, time, unnest(labels) AS given FROM new_lines
      WHERE kind = 'feedback' AND revision IS NOT NULL AND time IS NOT NULL)
WHERE given.id IS NOT NULL
"""


def log_files(log_dir: Path) -> list[Path]:
    """The revisions' logs: `<revision>.log` and the segments rotation renamed (`<revision>.log.<n>`)."""
    if not log_dir.is_dir():
        return []
    return sorted(path for path in log_dir.iterdir() if path.is_file() and (
        path.suffix == ".log" or (path.suffixes[-2:-1] == [".log"] and path.suffix[1:].isdigit())))


class LocalStore:
    def __init__(self, log_dir: Path, directory: Path, keep_files: int | None = None) -> None:
        self.log_dir = log_dir
        self.directory = directory
        self.keep_files = value("LOG_KEEP_FILES") if keep_files is None else keep_files

    @contextlib.contextmanager
    def _connected(self) -> Iterator[Any]:
        import duckdb

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "store.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                connection = duckdb.connect(str(self.directory / "store.duckdb"))
            except duckdb.Error as exc:
                raise ToolError(f"the outcome store {self.directory / 'store.duckdb'} cannot be opened ({exc}); "
                                f"move it aside and the next look rebuilds it from the logs (rotated segments "
                                f"already read and deleted are not in them)") from None
            try:
                connection.execute(SCHEMA)
                found = connection.execute("SELECT max(format) FROM store_format").fetchone()[0]
                if found != STORE_FORMAT:
                    connection.execute("DROP TABLE predictions; DROP TABLE labels; DROP TABLE positions; "
                                       "DROP TABLE store_format")
                    connection.execute(SCHEMA)
                    connection.execute("INSERT INTO store_format VALUES (?)", [STORE_FORMAT])
                yield connection
            finally:
                connection.close()

    def take_in(self, connection: Any) -> dict[str, int]:
        """Every log line written since the last look; how many bytes and files that was."""
        taken = {"bytes": 0, "files": 0}
        known = {(device, inode): position for device, inode, position
                 in connection.execute("SELECT device, inode, position FROM positions").fetchall()}
        read: dict[Path, tuple[tuple[int, int], bool]] = {}  # each file: its key, and whether read to its end
        for path in log_files(self.log_dir):
            try:
                handle = open(path, "rb")
            except FileNotFoundError:  # rotated away since it was listed: read under its new name
                continue
            with handle:
                status = os.fstat(handle.fileno())
                key = (status.st_dev, status.st_ino)
                position = known.get(key, 0)
                if status.st_size < position:  # truncated: start again
                    position = 0
                while position < status.st_size:
                    handle.seek(position)
                    data = handle.read(min(CHUNK_BYTES, status.st_size - position))
                    end = data.rfind(b"\n") + 1
                    if end == 0:
                        if len(data) < CHUNK_BYTES:
                            break  # a line still being written
                        end = len(data)  # one line longer than a chunk: not a line of ours; skip it
                    self._take(connection, data[:end], key, str(path), position + end)
                    position += end
                    taken["bytes"] += end
                taken["files"] += 1
                read[path] = (key, position >= status.st_size)
        self._prune(connection, read)
        return taken

    def _prune(self, connection: Any, read: dict[Path, tuple[tuple[int, int], bool]]) -> None:
        """Rotated segments read to their end, beyond each revision's newest `keep_files`: deleted (they are never
        written again). A segment not yet read to its end is kept, however many there are."""
        for path, (key, whole) in read.items():
            if path.suffix == ".log" or not whole:
                continue
            active = path.with_suffix("")
            newer = [n for n, _ in segments(active) if n > int(path.suffix[1:])]
            if len(newer) >= self.keep_files:
                path.unlink(missing_ok=True)
                connection.execute("DELETE FROM positions WHERE device = ? AND inode = ?", list(key))

    def _take(self, connection: Any, data: bytes, key: tuple[int, int], path: str, position: int) -> None:
        chunk = self.directory / "new-lines.ndjson"
        chunk.write_bytes(data)
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(f"CREATE OR REPLACE TEMP TABLE new_lines AS SELECT * FROM read_json(?, "
                               f"format = 'newline_delimited', ignore_errors = true, columns = {LINE_COLUMNS})",
                               [str(chunk)])
            connection.execute(TAKE_PREDICTIONS)
            connection.execute(TAKE_LABELS)
            connection.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)", [*key, path, position])
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        finally:
            chunk.unlink(missing_ok=True)

    def _load(self, connection: Any, service: str, file_labels: list[TrueLabel]) -> None:
        """A LABELS file's labels as the relation file_labels (through a CSV DuckDB reads: a million rows in a
        second, where one insert per row takes minutes)."""
        if not file_labels:
            connection.execute("CREATE OR REPLACE TEMP TABLE file_labels(service VARCHAR, id VARCHAR, "
                               "label_class VARCHAR, label_value DOUBLE, logged TIMESTAMPTZ)")
            return
        path = self.directory / "file-labels.csv"
        with open(path, "w", newline="") as out:
            csv.writer(out).writerows((label.id, str(label.label)) for label in file_labels)
        try:
            connection.execute("CREATE OR REPLACE TEMP TABLE file_labels AS SELECT ?::VARCHAR AS service, id, "
                               "label AS label_class, NULL::DOUBLE AS label_value, NULL::TIMESTAMPTZ AS logged FROM "
                               "read_csv(?, header = false, columns = {'id': 'VARCHAR', 'label': 'VARCHAR'})",
                               [service, str(path)])
        finally:
            path.unlink(missing_ok=True)

    def outcomes(self, service: str, start: float, end: float, file_labels: list[TrueLabel] | None = None
                 ) -> Outcomes:
        """The service's outcomes over [start, end): predictions in it, labels posted since it began (or a LABELS
        file's)."""
        with self._looked(service, file_labels) as (connection, relation):
            rows = connection.execute(query("duckdb", relation), {"service": service, "start": moment(start),
                                                                  "end": moment(end)}).fetchall()
        return outcomes_of(dict(zip(COLUMNS, row)) for row in rows)

    def labelled_answers(self, service: str, revision: str, since: float, limit: int,
                         file_labels: list[TrueLabel] | None = None) -> list[LabelledAnswer]:
        """The revision's newest labelled answers to users since `since`, at most `limit`, newest first."""
        with self._looked(service, file_labels) as (connection, relation):
            rows = connection.execute(labelled_answers("duckdb", limit, relation), {
                "service": service, "revision": revision, "start": moment(since)}).fetchall()
        return [LabelledAnswer.of(*row) for row in rows]

    @contextlib.contextmanager
    def _looked(self, service: str, file_labels: list[TrueLabel] | None) -> Iterator[tuple[Any, str]]:
        """The store with every new line taken in, and the relation labels come from."""
        if not self.log_dir.is_dir():
            raise ToolError(f"no revision has logged here yet ({self.log_dir} does not exist): start the local "
                            f"Cloud Run (make emulator), deploy, and send some traffic")
        with self._connected() as connection:
            self.take_in(connection)
            relation = "labels"
            if file_labels is not None:
                relation = "file_labels"
                self._load(connection, service, file_labels)
            yield connection, relation
