"""The bring-your-own rows of `make bench`: imported models served by our handler (V1 and V2) beside MLServer's
scikit-learn runtime serving the same file the user saved, and what the handler's one-row prediction costs against
the model's own `predict` in the same process.

Three models, each trained at the first use in a run into .bench/byom/trained/ and imported there with
`make import-model`'s own command:
  telco    the worked example (notebooks/bring_your_own.ipynb): a ColumnTransformer with a OneHotEncoder on two
           string columns and a StandardScaler, then a LogisticRegression;
  hgb      a HistGradientBoostingClassifier (100 iterations) on 8 number columns, the field's most used tabular model;
  xgbpipe  a ColumnTransformer (OneHotEncoder, StandardScaler) then an XGBClassifier (100 trees): served by us from
           XGBoost's own file; MLServer's scikit-learn runtime unpickles the same Pipeline (xgboost-cpu installed
           beside it; mlserver-xgboost serves a bare booster, not a Pipeline).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.bench.serving_targets import (BENCH_DIR, MLSERVER_VENV, Request, Target, _mlserver_installed,
                                              start_process)
from iris_tools.environment import ROOT
from iris_tools.local.servers import Server, free_port
from iris_tools.local.versions import start_function

NOTEBOOK = ROOT / "notebooks" / "bring_your_own.ipynb"
HOME = BENCH_DIR / "byom"
HANDLER_GOAL = 1.10  # the handler's prediction of one row: at most 10% over the model's own predict
MLSERVER_GOAL = 1.5
OVERHEAD_GOAL_MS = 0.3  # a request's cost beyond the estimator's own predict of its row


def _telco(trained: Path) -> Path:
    env = {**os.environ, "IRIS_EXAMPLES_DIR": str(trained)}
    subprocess.run([sys.executable, "notebooks/run_notebook.py", str(NOTEBOOK)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    return trained / "telco.joblib"


def _table(rows: int) -> Any:
    """A customer table with a string column, the same every run."""
    import numpy as np
    import pandas

    generator = np.random.default_rng(0)
    return pandas.DataFrame({"tenure": generator.integers(1, 72, rows).astype(float),
                             "plan": generator.choice(["basic", "pro", "team"], rows),
                             "monthly": np.round(generator.uniform(10, 120, rows), 2),
                             "calls": generator.integers(0, 20, rows).astype(float)})


def _hgb(trained: Path) -> Path:
    import joblib
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    generator = np.random.default_rng(0)
    X = generator.normal(size=(4000, 8))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)
    joblib.dump(HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0).fit(X, y),
                trained / "hgb.joblib")
    return trained / "hgb.joblib"


def _rf(trained: Path) -> Path:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    generator = np.random.default_rng(0)
    X = generator.normal(size=(4000, 8))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)
    joblib.dump(RandomForestClassifier(n_estimators=200, max_depth=12, n_jobs=1, random_state=0).fit(X, y),
                trained / "rf.joblib")
    return trained / "rf.joblib"


def _xgbpipe(trained: Path) -> Path:
    import joblib
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = _table(4000)
    y = ((frame["tenure"] > 30) ^ (frame["plan"] == "pro")).astype(int) + (frame["calls"] > 12)
    columns = ColumnTransformer([("plan", OneHotEncoder(), ["plan"]),
                                 ("numbers", StandardScaler(), ["tenure", "monthly", "calls"])])
    pipeline = make_pipeline(columns, xgboost.XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1))
    joblib.dump(pipeline.fit(frame, y), trained / "xgbpipe.joblib")
    return trained / "xgbpipe.joblib"


@dataclass(frozen=True)
class BenchModel:
    name: str
    train: Callable[[Path], Path]  # writes the user's file into the folder given; returns it
    row: dict[str, Any]  # the one row every single request asks
    strings: tuple[str, ...]
    described: str
    framed: bool  # fitted on a DataFrame: its own predict is asked one, and MLServer decodes one (its pandas codec)

    def rows(self, count: int) -> list[dict[str, Any]]:
        """Deterministic rows across the model's values, for the batch requests."""
        import numpy as np

        generator = np.random.default_rng(1)
        if self.name in ("hgb", "rf"):
            return [dict(zip(self.row, map(float, generator.normal(size=len(self.row))))) for _ in range(count)]
        if self.name == "telco":
            return [{"tenure": float(generator.integers(1, 72)), "plan": ["basic", "pro", "team"][generator.integers(3)],
                     "contract": ["monthly", "yearly"][generator.integers(2)],
                     "monthly": round(float(generator.uniform(10, 120)), 2)} for _ in range(count)]
        return _table(count)[list(self.row)].to_dict("records")


MODELS = {model.name: model for model in (
    BenchModel("telco", _telco, {"tenure": 12.0, "plan": "pro", "contract": "monthly", "monthly": 29.5},
               ("plan", "contract"), "the imported telco Pipeline (ColumnTransformer, OneHotEncoder on two string "
               "columns, LogisticRegression)", True),
    BenchModel("hgb", _hgb, {f"x{i}": round(0.1 * i - 0.3, 2) for i in range(8)}, (),
               "an imported HistGradientBoostingClassifier (100 iterations, 8 number columns)", False),
    BenchModel("rf", _rf, {f"x{i}": round(0.1 * i - 0.3, 2) for i in range(8)}, (),
               "an imported RandomForestClassifier (200 trees, 8 number columns)", False),
    BenchModel("xgbpipe", _xgbpipe, {"tenure": 12.0, "plan": "pro", "monthly": 29.5, "calls": 3.0}, ("plan",),
               "an imported Pipeline: ColumnTransformer, then XGBClassifier (100 trees), served from XGBoost's own file",
               True),
)}


@functools.cache
def prepared(name: str) -> tuple[Path, Path]:
    """(the user's file, functions/<name>/ as `make import-model` makes it), under .bench/byom/: once per run."""
    trained, functions = HOME / "trained", HOME / "functions"
    shutil.rmtree(functions / name, ignore_errors=True)
    trained.mkdir(parents=True, exist_ok=True)
    functions.mkdir(parents=True, exist_ok=True)
    file = MODELS[name].train(trained)
    subprocess.run([sys.executable, "-m", "iris_tools.model_import", str(file), name, "--functions-dir",
                    str(functions)], cwd=ROOT, check=True, capture_output=True, timeout=600)
    return file, functions / name


def _ready(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        """Made before anything is timed (a target's requirements are checked first): never in a cold start."""
        try:
            prepared(name)
        except (OSError, subprocess.SubprocessError, ImportError) as exc:
            return f"the {name} model could not be trained and imported ({exc})"
        return None

    return check


def _v2(model: BenchModel, batch: list[dict], mlserver: bool) -> Request:
    """Ours: one tensor per feature. MLServer: one tensor per column it makes a DataFrame of (its pandas codec,
    strings for the BYTES columns) for a model fitted on one; one [N, F] FP64 tensor for a model of arrays."""
    if mlserver and not model.framed:
        body: dict[str, Any] = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [len(batch), len(model.row)],
                                            "data": [[row[name] for name in model.row] for row in batch]}]}
    else:
        inputs = []
        for name in model.row:
            tensor = {"name": name, "datatype": "BYTES" if name in model.strings else "FP64", "shape": [len(batch)],
                      "data": [row[name] for row in batch]}
            if mlserver and name in model.strings:
                tensor["parameters"] = {"content_type": "str"}
            inputs.append(tensor)
        body = {"inputs": inputs, **({"parameters": {"content_type": "pd"}} if mlserver else {})}
    return Request("POST", f"/v2/models/{model.name}/infer", json.dumps(body).encode(), "application/json")


def predict_one_ms(name: str) -> dict[str, float]:
    """Milliseconds per one-row prediction, in this process: the model's own predict as a user calls it (a one-row
    DataFrame for a model fitted on one), and the handler's (its rows as an array in feature order)."""
    import joblib
    import numpy as np
    import pandas

    from shared.model import ServedModel

    model = MODELS[name]
    file, folder = prepared(name)
    estimator = joblib.load(file)
    served = ServedModel.load(folder, name)
    asked = pandas.DataFrame([model.row]) if model.framed else np.array([list(model.row.values())], dtype=np.float64)
    array = np.empty((1, len(model.row)), dtype=served.features.dtype)
    array[0] = list(model.row.values())

    def per_call(call: Callable[[], Any]) -> float:
        """The least mean of 5 runs of 0.2 s: the machine's noise only ever adds."""
        call()
        best = float("inf")
        for _ in range(5):
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < 0.2:
                call()
                count += 1
            best = min(best, 1000 * (time.perf_counter() - started) / count)
        return best

    return {"estimator": round(per_call(lambda: estimator.predict(asked)), 4),
            "handler": round(per_call(lambda: served.predict(array)), 4),
            **_request_ms(folder, model.row, per_call)}


def _request_ms(folder: Path, row: dict[str, Any], per_call: Callable[[Callable[[], Any]], float]) -> dict[str, float]:
    """A whole GET / of one row through the function's own WSGI app, in this process (the framework, the handler,
    the answer and its log line; the log to /dev/null): its milliseconds, and of them those spent outside the
    estimator's own predict (timed inside the same requests, so the machine's noise falls on both alike)."""
    import contextlib
    import gc
    import io
    from urllib.parse import urlencode

    from functions_framework import create_app
    from werkzeug.test import EnvironBuilder

    from shared.model import ServedModel

    environ = EnvironBuilder(path="/", query_string=urlencode(row)).get_environ()

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"GET / answered {status}")

    sink = open(os.devnull, "w")  # noqa: SIM115 - left open: the log's writer thread writes to it until the end
    with contextlib.redirect_stdout(sink):
        # the app's own model: not one loaded before in this process (predict_one_ms's), whatever gc's order
        earlier = {id(o) for o in gc.get_objects() if type(o) is ServedModel}
        app = create_app("predict", str(folder / "main.py"))
        served = next(o for o in gc.get_objects() if type(o) is ServedModel and o.directory == folder
                      and id(o) not in earlier)
        predict, inside = served._batcher._predict, [0.0, 0]

        def timed(rows: Any) -> Any:
            started = time.perf_counter()
            try:
                return predict(rows)
            finally:
                inside[0] += time.perf_counter() - started
                inside[1] += 1

        served._batcher._predict = timed

        def one() -> bytes:
            return b"".join(app({**environ, "wsgi.input": io.BytesIO()}, start_response))

        best = float("inf")
        for _ in range(5):  # the least of 5 runs of 0.2 s: the machine's noise only ever adds
            inside[:] = [0.0, 0]
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < 0.2:
                one()
                count += 1
            elapsed = time.perf_counter() - started
            if elapsed / count < best:
                best, outside = elapsed / count, (elapsed - inside[0]) / count
        return {"request": round(1000 * best, 4), "overhead": round(1000 * outside, 4)}


# Heavy models, whose one predict of a row costs about what one of 32 rows does: measured with batching off and
# on, and against MLServer with its own adaptive batching set alike.
BATCHED_MODELS = ("hgb", "rf")
BATCH_ROWS, BATCH_WAIT_MS = 32, 2
# functions-framework's server runs THREADS request threads (4 a core by default): a batch holds at most that many
# requests, so a heavy model's server runs as many as the connections it is to batch (docs/serving.md).
SERVER_THREADS = {"THREADS": "32"}
BATCHING_GOALS = (("ours-nobatch", 5.0, "x ours with batching off"), ("mlserver-batch", 1.5, "x MLServer batching"))
P50_AT_1_GOAL_MS = 1.0


def mlserver_target(model: BenchModel, batching: bool = False) -> Target:
    def start_on(port: int) -> Server:
        BENCH_DIR.mkdir(exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="mlserver-", dir=BENCH_DIR))
        shutil.copy(prepared(model.name)[0], directory / "model.joblib")
        batch = {"max_batch_size": BATCH_ROWS, "max_batch_time": BATCH_WAIT_MS / 1000} if batching else {}
        (directory / "model-settings.json").write_text(json.dumps(
            {"name": model.name, "implementation": "mlserver_sklearn.SKLearnModel",
             "parameters": {"uri": "./model.joblib"}, **batch}))
        (directory / "settings.json").write_text(json.dumps(
            {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}))
        return start_process([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(directory)], port, cwd=directory,
                             cleanup=lambda: shutil.rmtree(directory, ignore_errors=True))

    name = f"mlserver-batch:{model.name}" if batching else f"mlserver:{model.name}"
    batched = (f"; adaptive batching on (max_batch_size {BATCH_ROWS}, max_batch_time {BATCH_WAIT_MS / 1000} s)"
               if batching else "")
    return Target(name=name, group="pipeline", start_on=start_on, protocol="v2",
                  description=f"MLServer 1.7.1 + mlserver-sklearn on the same file as ours:{model.name}; V2 JSON"
                              f"{', one tensor per column, its pandas codec' if model.framed else ', one FP64 tensor'}"
                              f"{batched}",
                  single=_v2(model, [model.row], mlserver=True), requires=[_mlserver_installed, _ready(model.name)])


def pipeline_targets() -> list[Target]:
    targets = []
    for model in MODELS.values():
        heavy = model.name in BATCHED_MODELS
        settings = {**SERVER_THREADS, "BATCH_SIZE": str(BATCH_ROWS), "BATCH_WAIT_MS": str(BATCH_WAIT_MS),
                    "PREDICTOR_PROCESS": "1"} \
            if heavy else {}
        start = functools.partial(lambda name, env, port: start_function(prepared(name)[1] / "main.py", port, env=env),
                                  model.name, settings)
        single = Request("GET", "/?" + "&".join(f"{k}={v}" for k, v in model.row.items()))
        if heavy:
            targets.append(Target(
                name=f"ours-nobatch:{model.name}", group="pipeline", single=single, requires=[_ready(model.name)],
                description=f"the same with batching off (BATCH_SIZE=1, THREADS=32)",
                start_on=functools.partial(lambda name, port: start_function(
                    prepared(name)[1] / "main.py", port, env={**SERVER_THREADS, "BATCH_SIZE": "1"}), model.name)))
            targets.append(Target(
                name=f"ours-inserver:{model.name}", group="pipeline", single=single, requires=[_ready(model.name)],
                description="the same with batching on, the estimator in the server's process (PREDICTOR_PROCESS=0)",
                start_on=functools.partial(lambda name, env, port: start_function(
                    prepared(name)[1] / "main.py", port, env={**env, "PREDICTOR_PROCESS": "0"}), model.name,
                    settings)))
        targets += [
            Target(name=f"ours:{model.name}", group="pipeline", start_on=start,
                   description=f"{model.described} under functions-framework; GET by feature names"
                               + (f"; batching on (BATCH_SIZE={BATCH_ROWS}, BATCH_WAIT_MS={BATCH_WAIT_MS}, THREADS=32), "
                                  f"the estimator in a process of its own"
                                  if heavy else ""),
                   single=single,
                   batch=functools.partial(lambda model, count: Request(
                       "POST", "/", json.dumps({"instances": model.rows(count)}).encode(), "application/json"), model),
                   predict_one=functools.partial(predict_one_ms, model.name), requires=[_ready(model.name)]),
            Target(name=f"ours-v2:{model.name}", group="pipeline", start_on=start, protocol="v2",
                   description="the same, asked V2 (one tensor per feature)",
                   single=_v2(model, [model.row], mlserver=False), requires=[_ready(model.name)]),
            mlserver_target(model),
            *([mlserver_target(model, batching=True)] if heavy else []),
        ]
    return targets


def _batching_ratios(model: str, ours: Any, by_name: dict[str, Any]) -> list[str]:
    """A heavy model with batching on against itself with it off and MLServer batching, at 32 connections; and what
    batching costs a lone request (p50 at one connection)."""
    lines = []
    for other, goal, label in BATCHING_GOALS:
        theirs = by_name.get(f"{other}:{model}")
        if theirs and ours.single.get("32") and theirs.single.get("32"):
            ratio = ours.single["32"]["rps"] / theirs.single["32"]["rps"]
            lines.append(f"- ours:{model} (batching) req/s @32 = {ratio:.2f} {label} (target >= {goal}): "
                         f"{'met' if ratio >= goal else 'NOT met'}")
    alone = by_name.get(f"ours-nobatch:{model}")
    if alone and ours.single.get("1") and alone.single.get("1"):
        added = ours.single["1"]["p50_ms"] - alone.single["1"]["p50_ms"]
        lines.append(f"- ours:{model} p50 @1 with batching {ours.single['1']['p50_ms']:.2f} ms, {added:+.2f} ms over "
                     f"batching off (target <= +{P50_AT_1_GOAL_MS} ms): "
                     f"{'met' if added <= P50_AT_1_GOAL_MS else 'NOT met'}")
    return lines


def pipeline_ratios(results: list) -> list[str]:
    """Our V1 and V2 against MLServer on the same file, and the handler's prediction against the model's own."""
    by_name = {result.target: result for result in results}
    lines = []
    for model in MODELS:
        theirs = by_name.get(f"mlserver:{model}")
        for name in (f"ours:{model}", f"ours-v2:{model}"):
            ours = by_name.get(name)
            if ours and theirs and ours.single.get("8") and theirs.single.get("8"):
                ratio = ours.single["8"]["rps"] / theirs.single["8"]["rps"]
                lines.append(f"- {name} single req/s @8 = {ratio:.3f} x MLServer on the same file (target >= "
                             f"{MLSERVER_GOAL}): {'met' if ratio >= MLSERVER_GOAL else 'NOT met'}")
        ours = by_name.get(f"ours:{model}")
        if ours and ours.predict_one_ms.get("overhead") is not None:
            overhead = ours.predict_one_ms["overhead"]
            lines.append(f"- {model}: a whole GET / costs {ours.predict_one_ms['request']:.3f} ms in-process, "
                         f"{overhead:.3f} ms of it outside the estimator's own predict "
                         f"(target <= {OVERHEAD_GOAL_MS} ms): {'met' if overhead <= OVERHEAD_GOAL_MS else 'NOT met'}")
        if model in BATCHED_MODELS and ours:
            lines += _batching_ratios(model, ours, by_name)
        if ours and ours.predict_one_ms:
            cost = ours.predict_one_ms["handler"] / ours.predict_one_ms["estimator"]
            lines.append(f"- {model}: the handler predicts one row in {ours.predict_one_ms['handler']:.3f} ms, "
                         f"{cost:.3f} x the model's own predict as a user calls it "
                         f"({ours.predict_one_ms['estimator']:.3f} ms, in-process; target <= {HANDLER_GOAL}): "
                         f"{'met' if cost <= HANDLER_GOAL else 'NOT met'}")
    return lines
