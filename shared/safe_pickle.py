"""What a model artifact may name when it is unpickled: an allowlist, checked at start-up.

A pickle can name any importable callable, and unpickling calls it: an artifact is code. Before the
first request, and before the real unpickling (which linear models do lazily), `check_artifact`
walks the artifact with the allowlist in force. Allowed:
  - joblib.numpy_pickle.NumpyArrayWrapper, numpy.ndarray, numpy.dtype, numpy._core.multiarray.scalar
    (and numpy.core.multiarray.scalar, its name before numpy 2): arrays and their scalars;
  - the estimator's own class, as the manifest names it (sklearn.svm._classes.SVC, ...).
Anything else is refused, naming it, and the function does not start.

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


def _split(qualified: str) -> tuple[str, str]:
    module, _, name = qualified.rpartition(".")
    return module, name


def _refusal(module: str, name: str, estimator_class: str, allowed: frozenset) -> ModelLoadError:
    return ModelLoadError(
        f"pickle allowlist check failed: the artifact names {module}.{name}, which a "
        f"{estimator_class.rsplit('.', 1)[-1]} artifact never needs; it is refused before it runs "
        f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in allowed))})")


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
            _Walker(walker.stream, walker.estimator_class).load()
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

    def __init__(self, stream: io.BytesIO, estimator_class: str) -> None:
        super().__init__(stream)
        self.stream = stream
        self.estimator_class = estimator_class
        self.allowed = ALLOWED | {_split(estimator_class)}

    def read_exactly(self, size: int) -> None:
        if len(self.stream.read(size)) != size:
            raise EOFError("the artifact ends inside an array's data")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise _refusal(module, name, self.estimator_class, self.allowed)
        if (module, name) == ARRAY_WRAPPER:
            return _ArrayStandIn
        if (module, name) == _split(self.estimator_class):
            return type(name, (_StandIn,), {})
        return super().find_class(module, name)  # numpy's, already imported

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)
        if isinstance(self.stack[-1], _ArrayStandIn):
            self.stack.pop().skip_data(self)
            self.stack.append(None)

    dispatch[pickle.BUILD[0]] = load_build


def check_artifact(payload: bytes, estimator_class: str) -> None:
    """Walk the artifact with the allowlist in force; ModelLoadError naming what is not allowed."""
    stream = io.BytesIO(payload)
    try:
        _Walker(stream, estimator_class).load()
    except ModelLoadError:
        raise
    except Exception as exc:  # a torn or malformed pickle: refuse it as such, not as a crash
        raise ModelLoadError(f"pickle allowlist check failed: the artifact cannot be walked "
                             f"({type(exc).__name__}: {exc})") from None
    if stream.read(1):
        raise ModelLoadError("pickle allowlist check failed: the artifact has bytes after its end")


def restricted_load(payload: bytes, estimator_class: str) -> Any:
    """The estimator, unpickled by joblib's own unpickler with the same allowlist in force."""
    from joblib.numpy_pickle import NumpyUnpickler  # only when scikit-learn (which imports joblib) serves

    allowed = ALLOWED | {_split(estimator_class)}

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
