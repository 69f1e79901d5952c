"""What a model artifact may name when it is unpickled: an allowlist, checked at start-up.

A pickle can name any importable callable, and unpickling calls it: an artifact is code. Before the
first request, and before the real unpickling (which linear models do lazily), `check_artifact`
walks the artifact with joblib's own unpickler (pickletools cannot walk joblib's format: numpy's
bytes sit inline in the stream), its `find_class` restricted to:
  - joblib.numpy_pickle.NumpyArrayWrapper, numpy.ndarray, numpy.dtype, numpy._core.multiarray.scalar
    (and numpy.core.multiarray.scalar, its name before numpy 2): arrays and their scalars;
  - the estimator's own class, as the manifest names it (sklearn.svm._classes.SVC, ...).
The estimator's class is not imported during the walk (a stand-in takes its state), so the check
costs no scikit-learn import. Anything else is refused, naming it, and the function does not start.
`restricted_load` is the real load with the same allowlist in force.
"""

from __future__ import annotations

import io
from typing import Any

from shared.errors import ModelLoadError

ALLOWED = frozenset({
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
})


def _split(qualified: str) -> tuple[str, str]:
    module, _, name = qualified.rpartition(".")
    return module, name


class _StandIn:
    """Takes an estimator's construction and state during the walk, without importing its module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _unpickler(payload: bytes, estimator_class: str, stand_in: bool):
    from joblib.numpy_pickle import NumpyUnpickler

    allowed = ALLOWED | {_split(estimator_class)}

    class Restricted(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in allowed:
                raise ModelLoadError(
                    f"pickle allowlist check failed: the artifact names {module}.{name}, which a "
                    f"{estimator_class.rsplit('.', 1)[-1]} artifact never needs; it is refused before it runs "
                    f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in allowed))})")
            if stand_in and (module, name) == _split(estimator_class):
                return type(name, (_StandIn,), {})
            return super().find_class(module, name)

    return Restricted("artifact", io.BytesIO(payload), ensure_native_byte_order=True)


def check_artifact(payload: bytes, estimator_class: str) -> None:
    """Walk the artifact with the allowlist in force; ModelLoadError naming what is not allowed."""
    try:
        _unpickler(payload, estimator_class, stand_in=True).load()
    except ModelLoadError:
        raise
    except Exception as exc:  # a torn or malformed pickle: refuse it as such, not as a crash
        raise ModelLoadError(f"pickle allowlist check failed: the artifact cannot be walked "
                             f"({type(exc).__name__}: {exc})") from None


def restricted_load(payload: bytes, estimator_class: str) -> Any:
    """The estimator, unpickled with the same allowlist in force."""
    return _unpickler(payload, estimator_class, stand_in=False).load()
