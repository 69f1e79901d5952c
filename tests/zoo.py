"""Every classifier and regressor scikit-learn lists (`all_estimators`), each fitted on a small table it accepts, as a
user would save it: what the import's walk (tests/integration/test_every_estimator.py) imports and serves.

A table of 60 rows and 4 number columns (small non-negative integers, as CategoricalNB takes them); classes 0, 1 and 2
(integers: the answers must keep their type), or 0 and 1 for the estimators that take only two; a positive target for
regressors (Gamma and Poisson take no other), two targets for the multi-output ones. A meta-estimator wraps a
LogisticRegression or a Ridge; an ensemble of estimators has two members.
"""

from __future__ import annotations

import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSIFIER, REGRESSOR = "classifier", "regressor"
ROWS, FEATURES = 60, 4

# What an estimator needs besides the table to be fitted at all (a parameter its default cannot fit with here).
PARAMETERS: dict[str, dict[str, Any]] = {
    "NuSVC": {"nu": 0.1},
    "QuadraticDiscriminantAnalysis": {"reg_param": 0.1},
    "RadiusNeighborsClassifier": {"radius": 2.0},  # every row of the table then has neighbours
    "RadiusNeighborsRegressor": {"radius": 2.0},
}
BINARY = {"FixedThresholdClassifier", "TunedThresholdClassifierCV"}
MULTI_OUTPUT = {"ClassifierChain", "MultiOutputClassifier", "MultiOutputRegressor", "RegressorChain", "CCA",
                "PLSCanonical", "MultiTaskElasticNet", "MultiTaskElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV"}
ONE_FEATURE = {"IsotonicRegression"}


@dataclass(frozen=True)
class Specimen:
    name: str  # the class's name, as all_estimators lists it
    kind: str
    estimator: Any  # fitted
    X: np.ndarray  # what it was fitted on
    X_test: np.ndarray  # rows to ask it


def table(kind: str, name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(ROWS, FEATURES)).astype(np.float64)
    if name in ONE_FEATURE:
        X = X[:, :1] + rng.uniform(0, 1, size=(ROWS, 1))
    if kind == CLASSIFIER:
        y = (X[:, 0] + X[:, -1] > 3).astype(np.int64)
        if name not in BINARY:
            y = y + (X[:, 1 % X.shape[1]] > 2)
        return X, np.column_stack([y, X[:, 0] > 1]).astype(np.int64) if name in MULTI_OUTPUT else y
    y = 3.0 + X @ np.linspace(0.5, 1.5, X.shape[1]) + rng.uniform(0, 0.1, ROWS)
    return X, np.column_stack([y, 2 * y + 1]) if name in MULTI_OUTPUT else y


def build(name: str, cls: type, kind: str) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    base, member = (LogisticRegression, DecisionTreeClassifier) if kind == CLASSIFIER else (Ridge, DecisionTreeRegressor)
    parameters = dict(PARAMETERS.get(name, {}))
    signature = inspect.signature(cls).parameters
    if "estimator" in signature and (signature["estimator"].default is inspect.Parameter.empty or
                                     name == "SelfTrainingClassifier"):
        parameters["estimator"] = base()
    if "estimators" in signature and signature["estimators"].default is inspect.Parameter.empty:
        parameters["estimators"] = [("linear", base()), ("tree", member(random_state=0))]
    if "random_state" in signature:
        parameters["random_state"] = 0
    return cls(**parameters)


def specimens() -> list[Specimen]:
    """Each classifier and regressor of `all_estimators`, fitted (one that cannot be fitted here raises)."""
    from sklearn.utils import all_estimators

    found = []
    for kind in (CLASSIFIER, REGRESSOR):
        for name, cls in all_estimators(type_filter=kind):
            X, y = table(kind, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings on a table this small
                estimator = build(name, cls, kind).fit(X, y)
            X_test, _ = table(kind, name, seed=1)
            found.append(Specimen(name, kind, estimator, X, X_test[:12]))
    return found


# ---------------------------------------------------------------------------------------------------- the walk

SERVED = "served"
ROUTES = ("POST /", "GET /", "V2 infer")


@dataclass(frozen=True)
class Outcome:
    name: str
    kind: str
    outputs: int
    result: str  # SERVED, or why not (the import's refusal, or what a route answered)
    trusted: int = 0  # how many names the file holds that the import vetted and trusts
    probabilities: bool = False  # served with predict_proba's probabilities, named by class


def _same(answers: Any, expected: np.ndarray, kind: str) -> bool:
    """The handler's answers against the estimator's own predict: classes exactly and in their type (1 is not
    True, 1 is not 1.0), numbers to 1e-9 relative (NaN as NaN), a multi-output row as a list."""
    wanted = expected.tolist()
    if kind == REGRESSOR:
        ours = np.asarray([np.nan if value is None else value for value in np.ravel(np.array(answers, dtype=object))],
                          dtype=np.float64)
        return ours.shape == expected.ravel().shape and bool(
            np.allclose(ours, expected.ravel(), rtol=1e-9, atol=0, equal_nan=True))
    flat_ours = np.ravel(np.array(answers, dtype=object)).tolist()
    flat_wanted = np.ravel(np.array(wanted, dtype=object)).tolist()
    return answers == wanted and [type(value) for value in flat_ours] == [type(value) for value in flat_wanted]


def _v2_answers(document: dict[str, Any], kind: str, outputs: int) -> Any:
    """What a V2 answer says per row: the class (class_name) or the value (prediction), as the POST route says it."""
    found = {output["name"]: output for output in document["outputs"]}
    output = found.get("prediction") or found["class_name"]
    data = output["data"]
    if outputs > 1:
        return [data[i:i + outputs] for i in range(0, len(data), outputs)]
    return data


def serve_and_compare(specimen: Specimen, directory: Path, client: Any) -> str:
    """Every route asked the specimen's test rows; SERVED when each answers as its predict does, else what differed."""
    from urllib.parse import urlencode

    expected = np.asarray(specimen.estimator.predict(specimen.X_test))
    manifest = json.loads((directory / "model.json").read_text())
    names = [feature["name"] for feature in manifest["features"]]
    outputs = int(manifest.get("outputs", 1))
    posted = client.post("/", json={"instances": specimen.X_test.tolist()})
    if posted.status_code != 200:
        return f"POST / answered {posted.status_code}: {posted.get_data(as_text=True)[:200]}"
    if not _same(posted.get_json()["predictions"], expected, specimen.kind):
        return f"POST / answered {posted.get_json()['predictions'][:3]} where predict says {expected.tolist()[:3]}"
    key = "prediction" if specimen.kind == REGRESSOR else "predicted_class"
    got = client.get("/?" + urlencode(dict(zip(names, map(repr, specimen.X_test[0].tolist())))))
    if got.status_code != 200:
        return f"GET / answered {got.status_code}: {got.get_data(as_text=True)[:200]}"
    if not _same([got.get_json()[key]], expected[:1], specimen.kind):
        return f"GET / answered {got.get_json()[key]!r} where predict says {expected[:1].tolist()}"
    request = {"inputs": [{"name": name, "datatype": "FP64", "shape": [len(specimen.X_test)],
                           "data": specimen.X_test[:, i].tolist()} for i, name in enumerate(names)]}
    if specimen.kind == CLASSIFIER and outputs == 1:
        request["outputs"] = [{"name": "class_name"}]
    inferred = client.post(f"/v2/models/{directory.name}/infer", json=request)
    if inferred.status_code != 200:
        return f"V2 infer answered {inferred.status_code}: {inferred.get_data(as_text=True)[:200]}"
    answers = _v2_answers(inferred.get_json(), specimen.kind, outputs)
    if specimen.kind == CLASSIFIER and outputs > 1:
        expected = expected.astype(np.asarray(answers).dtype)  # V2 carries each output's classes in their type
    if not _same(answers, expected, specimen.kind):
        return f"V2 infer answered {answers[:3]} where predict says {expected.tolist()[:3]}"
    if specimen.kind == CLASSIFIER and outputs == 1:
        return _compare_probabilities(specimen, directory, client, manifest, names, request)
    return SERVED


def _compare_probabilities(specimen: Specimen, directory: Path, client: Any, manifest: dict[str, Any],
                           names: list[str], request: dict[str, Any]) -> str:
    """A classifier with predict_proba: its probabilities on every route, named by class in the model's order, to
    1e-12; one without: a 400 that says so on every route."""
    from urllib.parse import urlencode

    from shared.artifact import class_key

    keys = [class_key(name) for name in manifest["class_names"]]
    query = "/?" + urlencode({**dict(zip(names, map(repr, specimen.X_test[0].tolist()))), "output": "probabilities"})
    asked = [client.post("/", json={"instances": specimen.X_test.tolist(), "outputs": ["probabilities"]}),
             client.get(query),
             client.post(f"/v2/models/{directory.name}/infer", json={**request, "outputs": [{"name": "predict_proba"}]})]
    if not hasattr(specimen.estimator, "predict_proba"):
        refused = [response.status_code == 400 and response.get_json()["code"] == "no_probabilities"
                   for response in asked]
        return SERVED if all(refused) else f"no predict_proba, yet asked for probabilities it answered {refused}"
    if not manifest.get("probabilities"):
        return "it has predict_proba, and the import does not offer its probabilities"
    expected = np.asarray(specimen.estimator.predict_proba(specimen.X_test), dtype=np.float64)
    for route, response in zip(ROUTES, asked):
        if response.status_code != 200:
            return f"{route} with probabilities answered {response.status_code}: {response.get_data(as_text=True)[:200]}"
    posted, got, inferred = (response.get_json() for response in asked)
    tensor = inferred["outputs"][0]
    named = posted["probabilities"] + [got["probabilities"]]
    if any(list(row) != keys for row in named) or tensor["parameters"]["classes"] != keys:
        return f"probabilities named {list(named[0])} / {tensor['parameters']['classes']}, the classes are {keys}"
    ours = np.array([list(row.values()) for row in named])
    theirs = np.vstack([expected, expected[:1]])
    v2 = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    if not (np.allclose(ours, theirs, rtol=0, atol=1e-12) and np.allclose(v2, expected, rtol=0, atol=1e-12)):
        return f"probabilities {ours[:2].tolist()} where predict_proba says {expected[:2].tolist()}"
    return SERVED


def walk(found: list[Specimen], workspace: Path) -> list[Outcome]:
    """Each specimen saved with joblib, imported by `make import-model`'s own entry point, served by the shared
    handler (Flask's test client, as functions-framework makes the app) and compared on every route."""
    import contextlib
    import io

    import joblib
    from functions_framework import create_app

    import iris_tools.model_import.__main__ as model_import

    functions_dir = workspace / "functions"
    functions_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for specimen in found:
        file = workspace / f"{specimen.name}.joblib"
        joblib.dump(specimen.estimator, file)
        name = specimen.name.lower()[:40]
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            status = model_import.main([str(file), name, "--functions-dir", str(functions_dir)])
        if status != 0:
            outcomes.append(Outcome(specimen.name, specimen.kind, 1, errors.getvalue().strip().splitlines()[-1]))
            continue
        manifest = json.loads((functions_dir / name / "model.json").read_text())
        with contextlib.redirect_stdout(io.StringIO()):
            client = create_app("predict", str(functions_dir / name / "main.py")).test_client()
            result = serve_and_compare(specimen, functions_dir / name, client)
        outcomes.append(Outcome(specimen.name, specimen.kind, int(manifest.get("outputs", 1)), result,
                                len(manifest["trusted"]), bool(manifest.get("probabilities"))))
    return outcomes


TABLE_START = "<!-- the walk's table: written by `python -m tests.zoo --docs docs/models.md` -->"
TABLE_END = "<!-- end of the walk's table -->"


def table_text(outcomes: list[Outcome]) -> str:
    """docs/models.md's table of what is served, from a walk."""
    served = [o for o in outcomes if o.result == SERVED]
    lines = [TABLE_START, "",
             f"{len(served)} of {len(outcomes)} classifiers and regressors `all_estimators` lists are served on "
             f"every route ({', '.join(ROUTES)}), each answering as its own `predict` does, and a classifier with "
             f"`predict_proba` its probabilities as `predict_proba` does (named by class, to 1e-12):", "",
             "| estimator | kind | outputs | served | probabilities | names its file holds, vetted |",
             "|---|---|---|---|---|---|"]
    for outcome in outcomes:
        shown = "yes" if outcome.result == SERVED else f"no: {outcome.result}"
        offered = "yes" if outcome.probabilities else "-"
        lines.append(f"| `{outcome.name}` | {outcome.kind} | {outcome.outputs} | {shown} | {offered} | "
                     f"{outcome.trusted} |")
    return "\n".join(lines + ["", TABLE_END])


def documented_table(text: str) -> str:
    return text[text.index(TABLE_START):text.index(TABLE_END) + len(TABLE_END)]


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description="walk scikit-learn's estimators through the import; write the table")
    parser.add_argument("--docs", type=Path, required=True)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        table = table_text(walk(specimens(), Path(scratch)))
    text = arguments.docs.read_text()
    arguments.docs.write_text(text.replace(documented_table(text), table))
    sys.exit(0)
