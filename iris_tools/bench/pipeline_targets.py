"""The bring-your-own rows of `make bench`: an imported Pipeline served by our handler (V1 and V2) beside MLServer's
scikit-learn runtime serving the same file, and what the handler's prediction costs against the Pipeline's own.

The Pipeline is the worked example `telco` (notebooks/bring_your_own.ipynb: a ColumnTransformer with a
OneHotEncoder on two string columns and a StandardScaler, then a LogisticRegression), trained and imported with
`make import-model`'s own command into .bench/byom/ at the first use in a run.
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
from pathlib import Path

from iris_tools.bench.serving_targets import (BENCH_DIR, MLSERVER_VENV, Request, Target, _mlserver_installed,
                                              start_process)
from iris_tools.environment import ROOT
from iris_tools.local.servers import Server, free_port
from iris_tools.local.versions import start_function

PIPELINE = "telco"
NOTEBOOK = ROOT / "notebooks" / "bring_your_own.ipynb"
ROW = {"tenure": 12.0, "plan": "pro", "contract": "monthly", "monthly": 29.5}
STRINGS = ("plan", "contract")
HANDLER_GOAL = 1.10  # the handler's prediction of one row: at most 10% over the Pipeline's own predict
MLSERVER_GOAL = 1.5


@functools.cache
def pipeline_folder() -> Path:
    """functions/<PIPELINE>/ as `make examples` makes it, under .bench/byom/ (made once per run)."""
    home = BENCH_DIR / "byom"
    shutil.rmtree(home, ignore_errors=True)
    (home / "functions").mkdir(parents=True)
    env = {**os.environ, "IRIS_EXAMPLES_DIR": str(home / "trained"), "IRIS_FUNCTIONS_DIR": str(home / "functions")}
    for command in ([sys.executable, "notebooks/run_notebook.py", str(NOTEBOOK)],
                    [sys.executable, "-m", "iris_tools.model_import", str(home / "trained" / f"{PIPELINE}.joblib"),
                     PIPELINE]):
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    return home / "functions" / PIPELINE


def _prepared() -> str | None:
    """Made before anything is timed (a target's requirements are checked first): never in a cold start."""
    try:
        pipeline_folder()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the {PIPELINE} example could not be trained and imported ({exc})"
    return None


def rows(count: int) -> list[dict]:
    """Deterministic customers across the example's values."""
    import numpy as np

    generator = np.random.default_rng(0)
    plans, contracts = ["basic", "pro", "team"], ["monthly", "yearly"]
    return [{"tenure": float(generator.integers(1, 72)), "plan": plans[int(generator.integers(3))],
             "contract": contracts[int(generator.integers(2))], "monthly": round(float(generator.uniform(10, 120)), 2)}
            for _ in range(count)]


def _v2(batch: list[dict], mlserver: bool) -> Request:
    """One tensor per column; MLServer is told to make a DataFrame of them (its pandas codec) and strings of the
    BYTES columns, which is what the Pipeline was fitted on."""
    inputs = []
    for name in ROW:
        tensor = {"name": name, "datatype": "BYTES" if name in STRINGS else "FP64", "shape": [len(batch)],
                  "data": [row[name] for row in batch]}
        if mlserver and name in STRINGS:
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    body = {"inputs": inputs, **({"parameters": {"content_type": "pd"}} if mlserver else {})}
    return Request("POST", f"/v2/models/{PIPELINE}/infer", json.dumps(body).encode(), "application/json")


def _start_ours(port: int) -> Server:
    return start_function(pipeline_folder() / "main.py", port)


def predict_one_ms() -> dict[str, float]:
    """Milliseconds per one-row prediction, in this process: the Pipeline's own predict on a one-row DataFrame
    (what a user calls), and the handler's (its rows as an array in feature order, shared/model.py)."""
    import joblib
    import numpy as np
    import pandas

    from shared.model import ServedModel

    folder = pipeline_folder()
    estimator = joblib.load(folder / "model.joblib")
    served = ServedModel.load(folder, PIPELINE)
    frame = pandas.DataFrame([ROW])
    array = np.empty((1, len(ROW)), dtype=object)
    array[0] = list(ROW.values())

    def per_call(call) -> float:
        call()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            call()
            count += 1
        return 1000 * (time.perf_counter() - started) / count

    return {"estimator": round(per_call(lambda: estimator.predict(frame)), 4),
            "handler": round(per_call(lambda: served.predict(array)), 4)}


def mlserver_pipeline() -> Target:
    def start_on(port: int) -> Server:
        BENCH_DIR.mkdir(exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="mlserver-", dir=BENCH_DIR))
        shutil.copy(pipeline_folder() / "model.joblib", directory / "model.joblib")
        (directory / "model-settings.json").write_text(json.dumps(
            {"name": PIPELINE, "implementation": "mlserver_sklearn.SKLearnModel",
             "parameters": {"uri": "./model.joblib"}}))
        (directory / "settings.json").write_text(json.dumps(
            {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}))
        return start_process([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(directory)], port, cwd=directory,
                             cleanup=lambda: shutil.rmtree(directory, ignore_errors=True))

    return Target(name=f"mlserver:{PIPELINE}", group="pipeline", start_on=start_on, protocol="v2",
                  description=f"MLServer 1.7.1 + mlserver-sklearn on the imported {PIPELINE} Pipeline's joblib file; "
                              f"V2 JSON, one tensor per column, its pandas codec",
                  single=_v2([ROW], mlserver=True), requires=[_mlserver_installed, _prepared])


def pipeline_targets() -> list[Target]:
    return [
        Target(name=f"ours:{PIPELINE}", group="pipeline", start_on=_start_ours,
               description=f"the imported {PIPELINE} Pipeline (ColumnTransformer, OneHotEncoder on two string columns, "
                           f"LogisticRegression) under functions-framework; GET by feature names",
               single=Request("GET", "/?" + "&".join(f"{k}={v}" for k, v in ROW.items())),
               batch=lambda count: Request("POST", "/", json.dumps({"instances": rows(count)}).encode(),
                                           "application/json"),
               predict_one=predict_one_ms, requires=[_prepared]),
        Target(name=f"ours-v2:{PIPELINE}", group="pipeline", start_on=_start_ours, protocol="v2",
               description=f"the same, asked the V2 request MLServer is asked (one tensor per column)",
               single=_v2([ROW], mlserver=False), requires=[_prepared]),
        mlserver_pipeline(),
    ]


def pipeline_ratios(results: list) -> list[str]:
    """Our V1 and V2 against MLServer on the same Pipeline, and the handler's prediction against the Pipeline's."""
    by_name = {result.target: result for result in results}
    lines = []
    theirs = by_name.get(f"mlserver:{PIPELINE}")
    for name in (f"ours:{PIPELINE}", f"ours-v2:{PIPELINE}"):
        ours = by_name.get(name)
        if ours and theirs and ours.single.get("8") and theirs.single.get("8"):
            ratio = ours.single["8"]["rps"] / theirs.single["8"]["rps"]
            lines.append(f"- {name} single req/s @8 = {ratio:.3f} x MLServer on the same file (target >= "
                         f"{MLSERVER_GOAL}): {'met' if ratio >= MLSERVER_GOAL else 'NOT met'}")
    ours = by_name.get(f"ours:{PIPELINE}")
    if ours and ours.predict_one_ms:
        cost = ours.predict_one_ms["handler"] / ours.predict_one_ms["estimator"]
        lines.append(f"- {PIPELINE}: the handler predicts one row in {ours.predict_one_ms['handler']:.3f} ms, "
                     f"{cost:.3f} x the Pipeline's own predict on a one-row DataFrame "
                     f"({ours.predict_one_ms['estimator']:.3f} ms, in-process; target <= {HANDLER_GOAL}): "
                     f"{'met' if cost <= HANDLER_GOAL else 'NOT met'}")
    return lines
