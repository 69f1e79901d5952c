"""What a model artifact may name when it is unpickled: an allowlist, checked at start-up.

A pickle can name any importable callable, and unpickling calls it: an artifact is code. Before the
first request, and before the real unpickling (which linear models do lazily), `check_artifact`
walks the artifact with the allowlist in force. Allowed:
  - joblib.numpy_pickle.NumpyArrayWrapper, numpy.ndarray, numpy.dtype, numpy._core.multiarray.scalar
    (and numpy.core.multiarray.scalar, its name before numpy 2): arrays and their scalars;
  - the estimator's own class, as the manifest names it (sklearn.svm._classes.SVC, ...);
  - for a model imported with `make import-model`, the names its manifest lists (`trusted`), each of which
    `untrusted_reason` accepts, at import and again at every load (a manifest edited to widen the list is refused).
Anything else is refused, naming it, and the function does not start.

What `untrusted_reason` trusts (docs/models.md says why): classes of scikit-learn, numpy and scipy, whose
construction and state only hold data (an estimator's __init__ stores its parameters, by scikit-learn's rules),
numpy's ufuncs (pure arithmetic: a FunctionTransformer(np.log1p)), numpy's own reconstructors, and a few builtin
containers. Never a function of any other kind (unpickling calls it), nothing outside those three packages (a
pickle that calls os.system names posix.system, and is refused naming os.system), and none of their classes that
open files or fetch data when built (numpy.memmap, numpy's data sources, scipy.io, sklearn.datasets).

The walk imports neither scikit-learn nor joblib (together about a second of start-up): the
estimator's class and joblib's array wrapper are stand-ins that take their state, and each array's
raw bytes, which joblib writes inline after its wrapper (pickletools cannot walk that), are skipped
as joblib's reader would read them. `restricted_load` is the real load (joblib's own unpickler),
with the same allowlist in force; a model served by scikit-learn is loaded by it alone, read once.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from shared.errors import ModelLoadError

ARRAY_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
ALLOWED = frozenset({
    ARRAY_WRAPPER,
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
})


# Beyond ALLOWED, what an imported model's pickle may name without being a class of the trusted packages.
SAFE_GLOBALS = frozenset({
    ("builtins", "slice"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "range"), ("builtins", "object"), ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
})
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")
# What the walk builds for real: arrays and their dtypes (joblib's wrapper reads the dtype to skip the raw bytes
# that follow it), and the harmless builtin containers. Every other class is a stand-in that takes its state.
_BUILT = frozenset({("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.multiarray", "_reconstruct"),
                    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                    ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                    ("numpy.core.numeric", "_frombuffer")}) | {
    name for name in SAFE_GLOBALS if name[0] in ("builtins", "collections", "copyreg")}
# Parts of the trusted packages whose classes touch files or the network when built: never trusted.
UNTRUSTED_MODULES = ("numpy.testing", "numpy.lib._datasource", "numpy.lib.npyio", "numpy.lib._npyio_impl",
                     "numpy.ctypeslib", "numpy.f2py", "numpy._core.memmap", "numpy.core.memmap", "scipy.io",
                     "scipy.datasets", "sklearn.datasets", "sklearn.utils._testing")


def _split(qualified: str) -> tuple[str, str]:
    module, _, name = qualified.rpartition(".")
    return module, name


def shown(module: str, name: str) -> str:
    """A name as a person knows it: posix.system (what a pickle of os.system names) is os.system."""
    return f"os.{name}" if module in ("posix", "nt") else f"{module}.{name}"


def untrusted_reason(module: str, name: str) -> str | None:
    """None if an imported model's pickle may name `module.name`; else why not, in a few words."""
    if (module, name) in ALLOWED or (module, name) in SAFE_GLOBALS:
        return None
    if module.split(".")[0] not in TRUSTED_PACKAGES:
        return "it is outside scikit-learn, numpy and scipy"
    if any(module == part or module.startswith(part + ".") for part in UNTRUSTED_MODULES):
        return "it reads or writes files, or fetches data"
    import importlib

    try:
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return "it does not exist in the installed packages"
    if isinstance(found, type):
        return "it opens a file when built" if issubclass(found, np.memmap) else None
    if isinstance(found, np.ufunc):
        return None
    return "it is a function, not a class: unpickling would call it"


def _refusal(module: str, name: str, estimator_class: str, allowed: frozenset) -> ModelLoadError:
    reason = untrusted_reason(module, name) if (module, name) not in allowed else None
    why = f"; {reason}" if reason else ""
    return ModelLoadError(
        f"pickle allowlist check failed: the artifact names {shown(module, name)}, which a "
        f"{estimator_class.rsplit('.', 1)[-1]} artifact never needs{why}; it is refused before it runs "
        f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in allowed))})")


def allowed_for(estimator_class: str, trusted: tuple[str, ...] = ()) -> frozenset:
    """What an artifact may name: ALLOWED, its own class, and the manifest's `trusted` names, each vetted again
    (ModelLoadError naming one that `untrusted_reason` refuses)."""
    extra = {_split(qualified) for qualified in trusted}
    for module, name in sorted(extra):
        reason = untrusted_reason(module, name)
        if reason is not None:
            raise ModelLoadError(f"pickle allowlist check failed: the manifest trusts {shown(module, name)}, "
                                 f"which is never trusted ({reason}); import the model again")
    return ALLOWED | {_split(estimator_class)} | frozenset(extra)


class _StandIn:
    """Takes an estimator's construction and state during the walk, without importing its module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayStandIn(_StandIn):
    """joblib's NumpyArrayWrapper during the walk: its state says how many raw bytes follow it."""

    def skip_data(self, walker: "_Walker") -> None:
        state = getattr(self, "state", None) or {}
        dtype = np.dtype(state["dtype"])
        if dtype.hasobject:  # a nested pickle stream, walked under the same allowlist
            walker.nested().load()
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = walker.stream.read(1)
            walker.read_exactly(int.from_bytes(padding, "little"))
        count = 1
        for size in state["shape"]:
            count *= int(size)
        walker.read_exactly(count * dtype.itemsize)


class _Walker(pickle._Unpickler):  # the pure-Python unpickler: its BUILD can be extended, as joblib's is
    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, stream: io.BytesIO, estimator_class: str, allowed: frozenset) -> None:
        super().__init__(stream)
        self.stream = stream
        self.estimator_class = estimator_class
        self.allowed = allowed

    def nested(self) -> "_Walker":
        """A walker of the same kind for a pickle stream inside this one (an object array's)."""
        return _Walker(self.stream, self.estimator_class, self.allowed)

    def read_exactly(self, size: int) -> None:
        if len(self.stream.read(size)) != size:
            raise EOFError("the artifact ends inside an array's data")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise _refusal(module, name, self.estimator_class, self.allowed)
        return self.built(module, name)

    def built(self, module: str, name: str) -> Any:
        """What the walk makes of an allowed name: joblib's wrapper, an array part, or a stand-in."""
        if (module, name) == ARRAY_WRAPPER:
            return _ArrayStandIn
        if (module, name) in _BUILT:
            return pickle._Unpickler.find_class(self, module, name)  # numpy's (already imported), or a builtin
        return type(name, (_StandIn,), {})

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)
        if isinstance(self.stack[-1], _ArrayStandIn):
            self.stack.pop().skip_data(self)
            self.stack.append(None)

    dispatch[pickle.BUILD[0]] = load_build


class _Survey(_Walker):
    """A walk that lists what a file names, refusing (before anything in it runs) the first name that
    `untrusted_reason` does not trust."""

    def __init__(self, stream: io.BytesIO, found: set[tuple[str, str]]) -> None:
        super().__init__(stream, "", frozenset())
        self.found = found

    def nested(self) -> "_Walker":
        return _Survey(self.stream, self.found)

    def find_class(self, module: str, name: str) -> Any:
        reason = untrusted_reason(module, name)
        if reason is not None:
            raise ModelLoadError(f"the file names {shown(module, name)}, which is not trusted ({reason}); it is "
                                 f"refused before anything in it runs")
        self.found.add((module, name))
        return self.built(module, name)


def survey(payload: bytes) -> tuple[str, ...]:
    """Every name an uncompressed pickle or joblib file names, sorted, each trusted by `untrusted_reason`;
    ModelLoadError naming the first one that is not (nothing in the file runs)."""
    found: set[tuple[str, str]] = set()
    stream = io.BytesIO(payload)
    try:
        _Survey(stream, found).load()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"the file is not a pickle this can read ({type(exc).__name__}: {exc})") from None
    return tuple(sorted(f"{module}.{name}" for module, name in found))


def check_artifact(payload: bytes, estimator_class: str, trusted: tuple[str, ...] = ()) -> None:
    """Walk the artifact with the allowlist in force; ModelLoadError naming what is not allowed."""
    stream = io.BytesIO(payload)
    allowed = allowed_for(estimator_class, trusted)
    try:
        _Walker(stream, estimator_class, allowed).load()
    except ModelLoadError:
        raise
    except Exception as exc:  # a torn or malformed pickle: refuse it as such, not as a crash
        raise ModelLoadError(f"pickle allowlist check failed: the artifact cannot be walked "
                             f"({type(exc).__name__}: {exc})") from None
    if stream.read(1):
        raise ModelLoadError("pickle allowlist check failed: the artifact has bytes after its end")


def restricted_load(payload: bytes, estimator_class: str, trusted: tuple[str, ...] = ()) -> Any:
    """The estimator, unpickled by joblib's own unpickler with the same allowlist in force."""
    from joblib.numpy_pickle import NumpyUnpickler  # only when scikit-learn (which imports joblib) serves

    allowed = allowed_for(estimator_class, trusted)

    class Restricted(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in allowed:
                raise _refusal(module, name, estimator_class, allowed)
            return super().find_class(module, name)

    try:
        return Restricted("artifact", io.BytesIO(payload), ensure_native_byte_order=True).load()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"the artifact cannot be unpickled ({type(exc).__name__}: {exc})") from None
