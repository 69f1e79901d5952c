"""The outcome store: log lines as the handler writes them, taken in by DuckDB and judged by the one aggregate query
(quality/aggregate.py) on figures worked by hand; only what is new is read at each look; and the query the Cloud
Run store sends BigQuery is the same text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from iris_tools.quality.aggregate import query
from iris_tools.quality.local_store import LocalStore
from iris_tools.quality.outcomes import RevisionOutcome, TrueLabel, value_shift

T0 = 1_796_400_000.0


def stamp(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e6):06d}Z"


def prediction(revision: str, answers: list, at: float, answer_id: str | None = None, replay: str | None = None,
               service: str | None = "iris") -> str:
    """A prediction line in the handler's shape (shared/prediction_log.py): the answer's id is the server's; the
    client's request id (one for every line here) joins nothing."""
    line = {"time": stamp(at), "severity": "INFO", "message": "prediction", "kind": "prediction",
            "logging.googleapis.com/labels": {"model": "m", "revision": revision}, "model": "m",
            "revision": revision, "route": "GET /", "rows": len(answers), "inputs": [[1.0]] * len(answers),
            "predictions": answers, "latency_ms": 0.4, "answer_id": answer_id or f"batch-{at}",
            "request_id": "a"}
    if service:
        line["service"] = service
    if replay:
        line["replay"] = replay
    return json.dumps(line)


def feedback(revision: str, labels: list[tuple[str, object]], at: float) -> str:
    return json.dumps({"time": stamp(at), "severity": "INFO", "message": "feedback", "kind": "feedback", "model": "m",
                       "revision": revision, "service": "iris", "request_id": "f", "count": len(labels),
                       "labels": [{"id": i, "label": label} for i, label in labels]})


def append(log_dir: Path, revision: str, *lines: str) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{revision}.log", "a") as out:
        out.writelines(line + "\n" for line in lines)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "logs", tmp_path / "outcomes")


def test_labels_join_their_own_answer_by_id_and_batches_only_count_in_the_mix(store: LocalStore) -> None:
    logs = store.log_dir
    append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 + 10, "a"),
           prediction("iris-00001-abc", ["versicolor"], T0 + 11, "b"), "[INFO] a server's own line, not JSON")
    append(logs, "iris-00002-xyz", prediction("iris-00002-xyz", ["setosa"], T0 + 12, "c"),
           prediction("iris-00002-xyz", ["virginica", "setosa"], T0 + 13),
           prediction("iris-00002-xyz", ["virginica"], T0 + 14, "d"),
           feedback("iris-00002-xyz", [("a", "setosa"), ("c", "versicolor")], T0 + 13),
           feedback("iris-00002-xyz", [("b", "virginica"), ("c", "setosa")], T0 + 20),  # c again: a conflict
           feedback("iris-00002-xyz", [("zz", "setosa")], T0 + 15))
    found = store.outcomes("iris", T0, T0 + 100)
    r1, r2 = found.revisions["iris-00001-abc"], found.revisions["iris-00002-xyz"]
    assert (r1.predictions, r1.joinable, r1.labelled, r1.correct) == (2, 2, 2, 1)
    assert (r2.predictions, r2.joinable, r2.labelled, r2.correct) == (4, 2, 1, 0)  # c's first label: versicolor
    assert r1.confusion == {"setosa": {"setosa": 1}, "virginica": {"versicolor": 1}}
    assert r1.recall() == {"setosa": 1.0, "virginica": 0.0} and r2.coverage == 0.5
    assert 3.0 <= r1.delay()["p50_s"] <= 9.0 and r2.mix == {"setosa": 2, "virginica": 2}
    assert (found.labels, found.unmatched, found.conflicts) == (5, 1, 1)


def test_calibration_is_the_top_class_brier_score_and_reliability_per_tenth_of_confidence(store: LocalStore) -> None:
    """Answers whose client asked for probabilities carry their top class's (`confidence`); the labelled ones give
    each revision's top-class Brier score and, per tenth of confidence, how sure it was and how often right. Worked
    by hand: right at 0.95 and 0.85, wrong at 0.91; the Brier sum .05^2 + .15^2 + .91^2. Answers without a
    confidence, or without a label, or in a batch are not in it."""
    name = "iris-00001-abc"

    def sure(answer: str, at: float, request_id: str, confidence: float) -> str:
        line = json.loads(prediction(name, [answer], at, request_id))
        return json.dumps({**line, "confidence": [confidence]})

    append(store.log_dir, name, sure("setosa", T0 + 1, "a", 0.95), sure("setosa", T0 + 2, "b", 0.85),
           sure("virginica", T0 + 3, "c", 0.91), sure("setosa", T0 + 4, "unlabelled", 0.5),
           prediction(name, ["setosa"], T0 + 5, "no-probabilities"),
           feedback(name, [("a", "setosa"), ("b", "setosa"), ("c", "versicolor"), ("no-probabilities", "setosa")],
                    T0 + 6))
    outcome = store.outcomes("iris", T0, T0 + 100).revisions[name]
    assert (outcome.labelled, outcome.calibrated) == (4, 3)
    assert outcome.brier == pytest.approx((0.05 ** 2 + 0.15 ** 2 + 0.91 ** 2) / 3)
    assert outcome.reliability() == [
        {"bin": [0.8, 0.9], "answers": 1, "confidence": 0.85, "accuracy": 1.0},
        {"bin": [0.9, 1.0], "answers": 2, "confidence": 0.93, "accuracy": 0.5}]
    assert outcome.as_json()["calibration"]["brier"] == pytest.approx(outcome.brier, abs=1e-6)


def test_the_window_counts_predictions_in_it_and_labels_that_came_back_after_it(store: LocalStore) -> None:
    logs = store.log_dir
    append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 - 5, "before"),
           prediction("iris-00001-abc", ["setosa"], T0 + 5, "inside"),
           prediction("iris-00001-abc", ["setosa"], T0 + 65, "after"),
           prediction("iris-00001-abc", ["setosa"], T0 + 6, "warm", replay="warm-up"),
           feedback("iris-00001-abc", [("inside", "setosa"), ("before", "setosa"), ("warm", "setosa")], T0 + 600))
    outcome = store.outcomes("iris", T0, T0 + 60).revisions["iris-00001-abc"]
    assert (outcome.predictions, outcome.labelled) == (1, 1)  # the late label counts; the warm-up never does
    assert outcome.delay()["p50_s"] == pytest.approx(595.0)
    assert store.outcomes("other", T0, T0 + 60).revisions == {}


def test_a_regressors_outcomes_are_its_mean_absolute_error_and_a_sketch_of_its_values(store: LocalStore) -> None:
    append(store.log_dir, "diabetes-00001-abc", *(prediction("diabetes-00001-abc", [v], T0 + 1, i, service="diabetes")
                                                  for i, v in (("a", 10.0), ("b", 20.0), ("c", 12.0))),
           prediction("diabetes-00001-abc", [5.0], T0 + 2, service="diabetes"),
           feedback("diabetes-00001-abc", [("a", 13.0), ("c", "setosa")], T0 + 3).replace('"iris"', '"diabetes"'))
    found = store.outcomes("diabetes", T0, T0 + 10, file_labels=None)
    outcome = found.revisions["diabetes-00001-abc"]
    assert (outcome.predictions, outcome.labelled, outcome.mae, outcome.mix) == (4, 1, 3.0, {})
    assert outcome.regression and outcome.values_count == 4 and outcome.sketch[0] == 5.0 and outcome.sketch[-1] == 20.0
    from_file = store.outcomes("diabetes", T0, T0 + 10, [TrueLabel("a", "13"), TrueLabel("b", "18")])
    assert from_file.revisions["diabetes-00001-abc"].mae == pytest.approx(2.5)  # a CSV's text read as numbers


def test_a_look_reads_only_what_is_new_and_never_a_line_twice(store: LocalStore) -> None:
    logs = store.log_dir
    append(logs, "iris-00001-abc", *(prediction("iris-00001-abc", ["setosa"], T0 + i, f"id{i}") for i in range(10)))
    assert store.outcomes("iris", T0, T0 + 100).revisions["iris-00001-abc"].predictions == 10
    with store._connected() as connection:
        assert store.take_in(connection)["bytes"] == 0  # nothing new
    partial = prediction("iris-00001-abc", ["setosa"], T0 + 50, "half")
    with open(logs / "iris-00001-abc.log", "a") as out:
        out.write(partial[:40])  # a line still being written is left for the next look
    assert store.outcomes("iris", T0, T0 + 100).revisions["iris-00001-abc"].predictions == 10
    with open(logs / "iris-00001-abc.log", "a") as out:
        out.write(partial[40:] + "\n")
    (logs / "iris-00001-abc.log").rename(logs / "iris-00001-abc.log.1")  # rotated: the same file, a new name
    append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["virginica"], T0 + 51, "new"))
    outcome = store.outcomes("iris", T0, T0 + 100).revisions["iris-00001-abc"]
    assert outcome.predictions == 12 and outcome.mix == {"setosa": 11, "virginica": 1}


def test_the_value_shift_from_sketches_is_the_exact_kolmogorov_smirnov_distance_within_a_percentile() -> None:
    import numpy as np
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(3)
    for shift in (0.0, 0.2, 1.0):
        a, b = rng.normal(0, 1, 5000), rng.normal(shift, 1, 4000)
        sketched = value_shift(*(RevisionOutcome("r", sketch=RevisionOutcome.sketch_of(v), values_count=len(v))
                                 for v in (a, b)))
        exact = ks_2samp(a, b)
        assert sketched.distance == pytest.approx(exact.statistic, abs=0.015)
        assert (sketched.p_value < 0.01) == (exact.pvalue < 0.01)


def test_one_query_text_for_both_targets() -> None:
    """BigQuery is sent the query as written; DuckDB runs sqlglot's translation of the same text."""
    import sqlglot

    written = query("bigquery")
    assert "APPROX_QUANTILES(predicted_value, 100)" in written and "@service" in written
    assert query("duckdb") == sqlglot.transpile(written, read="bigquery", write="duckdb")[0]
    assert "$service" in query("duckdb") and "APPROX_QUANTILE(" in query("duckdb")


def test_shippers_of_one_revision_rotate_its_log_by_size_and_lose_or_split_no_line(tmp_path: Path) -> None:
    """Three instances' shippers writing one revision's log at once, rotating at 20 kB: every line each sent is in
    exactly one file, whole, and every rotated segment reached the size before it was renamed."""
    import subprocess
    import sys

    from iris_tools.cloudrun.log_shipper import segments

    log = tmp_path / "logs" / "iris-00001-abc.log"
    shippers = [subprocess.Popen([sys.executable, "-m", "iris_tools.cloudrun.log_shipper", str(log), "20000"],
                                 stdin=subprocess.PIPE) for _ in range(3)]
    sent = []
    for n in range(3000):
        line = prediction("iris-00001-abc", ["setosa"], T0 + n / 100, f"s{n % 3}-{n}")
        sent.append(line)
        shippers[n % 3].stdin.write((line + "\n").encode())
    for shipper in shippers:
        shipper.stdin.close()
        assert shipper.wait(timeout=30) == 0
    files = [path for _, path in segments(log)] + [log]
    written = [line for path in files for line in path.read_text().splitlines()]
    assert sorted(written) == sorted(sent) and len(files) > 5
    assert all(path.stat().st_size >= 20000 for path in files[:-1])


def test_a_look_deletes_the_rotated_segments_it_has_read_beyond_the_newest_few_and_keeps_their_lines_counted(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for n in range(1, 6):
        append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 + n, f"id{n}"))
        (logs / "iris-00001-abc.log").rename(logs / f"iris-00001-abc.log.{n}")
    append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 + 9, "id9"))
    store = LocalStore(logs, tmp_path / "outcomes", keep_files=2)
    assert store.outcomes("iris", T0, T0 + 60).revisions["iris-00001-abc"].predictions == 6
    assert sorted(path.name for path in logs.iterdir() if ".log" in path.name) == [
        "iris-00001-abc.log", "iris-00001-abc.log.4", "iris-00001-abc.log.5"]
    (logs / "iris-00001-abc.log").rename(logs / "iris-00001-abc.log.6")  # rotated after it was read once
    append(logs, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 + 10, "id10"))
    assert store.outcomes("iris", T0, T0 + 60).revisions["iris-00001-abc"].predictions == 7  # nothing lost
    assert sorted(path.name for path in logs.iterdir() if ".log" in path.name) == [
        "iris-00001-abc.log", "iris-00001-abc.log.5", "iris-00001-abc.log.6"]


def test_a_store_that_cannot_be_opened_is_refused_naming_it_and_the_logs_are_left_alone(store: LocalStore) -> None:
    from iris_tools.cli.failures import ToolError

    append(store.log_dir, "iris-00001-abc", prediction("iris-00001-abc", ["setosa"], T0 + 1, "a"))
    store.directory.mkdir(parents=True)
    (store.directory / "store.duckdb").write_text("not a database")
    with pytest.raises(ToolError, match="store.duckdb cannot be opened"):
        store.outcomes("iris", T0, T0 + 60)
    assert (store.log_dir / "iris-00001-abc.log").read_text().count("\n") == 1
    (store.directory / "store.duckdb").unlink()
    assert store.outcomes("iris", T0, T0 + 60).revisions["iris-00001-abc"].predictions == 1


def test_the_bigquery_store_loads_a_labels_file_once_for_a_rollout_s_looks() -> None:
    """A LABELS file's labels go to BigQuery in a load job; a rollout's looks all pass the one list OutcomeReader
    read, and only the first look loads it. Broken on purpose (a load at every look): two loads for two looks."""
    from types import SimpleNamespace

    from iris_tools.quality.bigquery import BigQueryStore

    class RecordingClient:
        def __init__(self) -> None:
            self.loads: list[str] = []

        def get_table(self, name: str) -> SimpleNamespace:
            return SimpleNamespace(schema=[])

        def query_and_wait(self, text: str, job_config=None) -> list:
            return []

        def load_table_from_json(self, rows: list, table: str, job_config=None) -> SimpleNamespace:
            self.loads.append(table)
            return SimpleNamespace(result=lambda: None)

    client = RecordingClient()
    store = BigQueryStore(client, "p.iris_outcomes")
    labels = [TrueLabel("a", "setosa"), TrueLabel("b", "virginica")]
    first = store._relation("iris", labels)
    assert store._relation("iris", labels) == first and len(client.loads) == 1, client.loads
    assert store._relation("iris", [TrueLabel("a", "versicolor")]) != first and len(client.loads) == 2


def test_a_second_label_for_an_answer_changes_no_count_but_the_conflicts(store: LocalStore) -> None:
    """The first label of an answer counts; a later one, whatever it says, is a conflict. Broken on purpose (the last
    label counting, as before): the second look saw answer a wrong."""
    name = "iris-00001-abc"
    append(store.log_dir, name, prediction(name, ["setosa"], T0 + 1, "a"), prediction(name, ["virginica"], T0 + 2, "b"),
           feedback(name, [("a", "setosa"), ("b", "versicolor")], T0 + 3))
    before = store.outcomes("iris", T0, T0 + 100)
    append(store.log_dir, name, feedback(name, [("a", "virginica")], T0 + 4), feedback(name, [("b", "virginica")], T0 + 5))
    after = store.outcomes("iris", T0, T0 + 100)
    assert after.revisions == before.revisions and after.revisions[name].correct == 1
    assert (before.labels, before.conflicts, after.labels, after.conflicts) == (2, 0, 4, 2)
    assert after.unmatched == before.unmatched == 0


def test_a_labels_file_counts_each_answers_first_row_and_the_rest_as_conflicts(store: LocalStore, tmp_path) -> None:
    from iris_tools.quality.sources import OutcomeReader

    name = "iris-00001-abc"
    append(store.log_dir, name, prediction(name, ["setosa"], T0 + 1, "a"), prediction(name, ["virginica"], T0 + 2, "b"))
    path = tmp_path / "labels.csv"
    path.write_text("id,label\na,setosa\nb,virginica\na,virginica\n")
    found = OutcomeReader(store, "iris", str(path)).outcomes(T0, T0 + 100)
    assert (found.revisions[name].labelled, found.revisions[name].correct) == (2, 2)
    assert (found.labels, found.conflicts, found.unmatched) == (3, 1, 0)
