"""A corpus of hostile model files: each is refused by `make import-model` before anything in it runs, with the name
it tried (or the call it tried), exit 1, one line, nothing written; and by the handler's own load, at every start,
when a manifest is made to trust it. The trust is by rule (shared/safe_pickle.py): these are the rules' edges."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from pathlib import Path

import pytest

import iris_tools.model_import.__main__ as model_import
from shared.errors import ModelLoadError
from shared.safe_pickle import restricted_load, survey


def call(module: str, name: str, *arguments: bytes) -> bytes:
    """Protocol-0 opcodes that call module.name(*arguments), each argument given as opcodes."""
    return f"c{module}\n{name}\n(".encode() + b"".join(arguments) + b"tR"


def global_(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    return f"V{value}\n".encode()


def marker_command(marker: Path) -> bytes:
    return text(f"touch {marker}")


def user_function(values):  # a user's own function, as a FunctionTransformer would hold it
    return values


def corpus(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (the file's bytes, what its refusal must say)."""
    from sklearn.preprocessing import FunctionTransformer

    touch = marker_command(marker)
    return {
        "os.system": (call("posix", "system", touch) + b".", "names os.system"),
        "builtins.eval": (call("builtins", "eval", text(f"__import__('os').system('touch {marker}')")) + b".",
                          "names builtins.eval"),
        "builtins.exec": (call("builtins", "exec", text(f"open('{marker}', 'w')")) + b".", "names builtins.exec"),
        "builtins.getattr": (call("builtins", "getattr", global_("posix", "system"), text("__call__")) + b".",
                             "names builtins.getattr"),
        "subprocess.Popen": (call("subprocess", "Popen", b"(" + text("touch") + text(str(marker)) + b"l") + b".",
                             "names subprocess.Popen"),
        "importlib.import_module": (call("importlib", "import_module", text("os")) + b".",
                                    "names importlib.import_module"),
        "a user's function in a FunctionTransformer": (
            pickle.dumps(FunctionTransformer(func=user_function)), f"names {__name__}.user_function"),
        "a Cython rebuilder of a class that does not exist": (
            call("numpy.random.bit_generator", "__pyx_unpickle_Nothing", b"I0\n", b"N") + b".",
            "names numpy.random.bit_generator.__pyx_unpickle_Nothing"),
        "a Cython rebuilder handed an untrusted class": (
            call("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence", global_("subprocess", "Popen"),
                 b"I0\n", b"N") + b".", "names subprocess.Popen"),
        "a Cython rebuilder outside the trusted packages": (
            call("lxml.etree", "__pyx_unpickle__ReadOnlyProxy", b"N") + b".", "names lxml.etree.__pyx_unpickle_"),
        "a trusted class called with a ufunc": (
            call("numpy", "vectorize", global_("numpy", "add")) + b".", "calls numpy.vectorize with numpy.add"),
        "a trusted estimator called with a callable": (
            call("sklearn.preprocessing._function_transformer", "FunctionTransformer",
                 global_("numpy", "add")) + b".", "with numpy.add as an argument"),
        "copyreg._reconstructor with a function as its base": (
            call("copyreg", "_reconstructor", global_("sklearn.pipeline", "Pipeline"), global_("numpy", "add"), b"N")
            + b".", "calls copyreg._reconstructor with numpy.add"),
        "a RandomState built by a callable of the file's": (
            call("numpy.random._pickle", "__randomstate_ctor", text("MT19937"), global_("numpy", "add")) + b".",
            "calls numpy.random._pickle.__randomstate_ctor with numpy.add"),
        "a ufunc called on the file's values": (call("numpy", "add", b"I1\n", b"I2\n") + b".", "calls numpy.add"),
        "a metric called by the pickle": (
            call("sklearn.metrics._classification", "accuracy_score", b"(I1\nl", b"(I1\nl") + b".",
            "calls sklearn.metrics._classification.accuracy_score"),
        "an object it built, called": (
            call("copyreg", "_reconstructor", global_("sklearn.pipeline", "Pipeline"), global_("builtins", "object"),
                 b"N") + b"(I1\ntR.", "calls an object it built"),
        "numpy.memmap": (call("numpy", "memmap", text(str(marker))) + b".", "names numpy.memmap"),
        "numpy's file reader": (call("numpy.lib._npyio_impl", "load", text(str(marker))) + b".",
                                "names numpy.lib._npyio_impl.load"),
        "scipy.io": (call("scipy.io.matlab._mio", "loadmat", text(str(marker))) + b".", "names scipy.io"),
        "a data set fetcher": (call("sklearn.datasets._openml", "fetch_openml", text("iris")) + b".",
                               "names sklearn.datasets._openml.fetch_openml"),
        "joblib.load": (call("joblib.numpy_pickle", "load", text(str(marker))) + b".", "names joblib.numpy_pickle.load"),
        "pickle.loads": (call("pickle", "loads", b"C\x00") + b".", "names pickle.loads"),
    }


CASES = sorted(corpus(Path("/nonexistent")))


def test_the_corpus_holds_at_least_15_hostile_files() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES)
def test_the_import_refuses_it_before_it_runs_naming_what_it_tried(case: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload, says = corpus(marker)[case]
    file = tmp_path / "hostile.pkl"
    file.write_bytes(payload)
    functions = tmp_path / "functions"
    functions.mkdir()
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = model_import.main([str(file), "hostile", "--functions-dir", str(functions)])
    said = errors.getvalue()
    assert status == 1 and says in said and "nothing was written" in said, said
    assert len(said.strip().splitlines()) == 1 and "Traceback" not in said
    assert list(functions.iterdir()) == [] and not marker.exists() and not os.path.exists("V")


@pytest.mark.parametrize("case", CASES)
def test_the_handlers_own_load_refuses_it_too(case: str, tmp_path: Path) -> None:
    """A manifest made to trust the file's names: each is vetted again, and the rule for calls holds in the load."""
    marker = tmp_path / "ran"
    payload, _ = corpus(marker)[case]
    names: tuple[str, ...] = ()
    with contextlib.suppress(ModelLoadError):
        names = survey(payload)  # what a tampered manifest would list: only what the survey let through
    with pytest.raises(ModelLoadError):
        restricted_load(payload, "sklearn.pipeline.Pipeline", names or ("numpy.add",))
    assert not marker.exists()
