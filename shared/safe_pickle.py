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

What `vet` trusts, by rule (docs/models.md has each rule and why it cannot run code): classes of scikit-learn,
numpy and scipy, whose construction and state only hold data (an estimator's __init__ stores its parameters, by
scikit-learn's rules); Cython's `__pyx_unpickle_X` where X is such a class of the same module; the packages' own
rebuilders (REBUILDERS, scikit-learn's `newObj`); numpy's ufuncs and scikit-learn's metrics as held values; a few
builtin containers. Never a function of any other kind (unpickling calls it), nothing outside those three packages
(a pickle that calls os.system names posix.system, and is refused naming os.system), and none of their classes
that open files or fetch data when built (numpy.memmap, numpy's data sources, scipy.io, sklearn.datasets). And the
rule for calls (`_CallCheck`): a pickle calls only a vetted class or rebuilder it named, and hands a callable only
to a rebuilder where it takes a class.

The walk imports neither scikit-learn nor joblib (together about a second of start-up): the
estimator's class and joblib's array wrapper are stand-ins that take their state, and each array's
raw bytes, which joblib writes inline after its wrapper (pickletools cannot walk that), are skipped
as joblib's reader would read them. `restricted_load` is the real load (joblib's own unpickler),
with the same allowlist in force; a model served by scikit-learn is loaded by it alone, read once.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
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
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")
# The boosters' scikit-learn wrappers, read only by `make import-model` (never by the handler): each booster's state
# is its library's own format (XGBoost's UBJSON buffer, LightGBM's model string), loaded by the library's own loader,
# and the import writes it out as a file of that format (shared/boosters.py).
BOOSTER_PACKAGES = ("xgboost", "lightgbm")

CLASS, UFUNC, REBUILDS, METRIC = "class", "ufunc", "rebuilds", "metric"


@dataclass(frozen=True)
class Vetted:
    """A name a pickle may hold, and what it is: a class (called, it builds one of its own objects), a numpy ufunc or
    a scikit-learn metric (arithmetic; never called by a pickle), or a function that only rebuilds an object of a
    vetted class. A call
    may hand a class only to a rebuilder, at the positions it takes one (`class_positions`); every other callable
    argument is refused (`_CallCheck`)."""

    kind: str
    class_positions: frozenset[int] = frozenset()

    @property
    def callable_value(self) -> bool:
        """Held as a value the estimator may call later on arrays (a ufunc, a metric), never called by the pickle."""
        return self.kind in (UFUNC, METRIC)


# The builtin containers a pickle of scikit-learn's objects may build, and the functions numpy, scipy, scikit-learn
# and the standard library write into their pickles to rebuild their own objects, each with what it does, which is
# why it cannot run code of the file's choosing (docs/models.md repeats this). Positions: the arguments that are
# classes (each vetted itself).
BUILTIN_CLASSES = frozenset({
    ("builtins", "slice"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "range"), ("builtins", "object"), ("collections", "OrderedDict"),
})
REBUILDERS: dict[tuple[str, str], tuple[frozenset[int], str]] = {
    ("copyreg", "_reconstructor"): (frozenset({0, 1}), "object.__new__(cls), or base(state) for a builtin base"),
    ("numpy._core.multiarray", "_reconstruct"): (frozenset({0}), "an empty ndarray of a vetted subclass"),
    ("numpy.core.multiarray", "_reconstruct"): (frozenset({0}), "an empty ndarray of a vetted subclass"),
    ("numpy._core.multiarray", "scalar"): (frozenset(), "a numpy scalar from its dtype and bytes"),
    ("numpy.core.multiarray", "scalar"): (frozenset(), "a numpy scalar from its dtype and bytes"),
    ("numpy._core.numeric", "_frombuffer"): (frozenset(), "an ndarray over bytes"),
    ("numpy.core.numeric", "_frombuffer"): (frozenset(), "an ndarray over bytes"),
    ("numpy.ma.core", "_mareconstruct"): (frozenset({0, 1}), "ndarray.__new__ of the vetted classes (a masked array)"),
    ("numpy.random._pickle", "__bit_generator_ctor"): (frozenset({0}), "a bit generator of a vetted class, or named"),
    ("numpy.random._pickle", "__randomstate_ctor"): (frozenset(), "a RandomState around a bit generator"),
    ("numpy.random._pickle", "__generator_ctor"): (frozenset(), "a Generator around a bit generator"),
    ("collections", "defaultdict"): (frozenset({0}), "a dict whose missing key gets a new object of a vetted class"),
}
# scikit-learn's Cython modules of trees and distance metrics each define `newObj(cls)`: cls.__new__(cls), nothing else.
NEW_OBJECT = "newObj"
CYTHON_REBUILDER = "__pyx_unpickle_"  # Cython's: type.__new__(cls) of the class it is named for, then its fields
# scikit-learn's metrics (scores, losses, distances): arithmetic over arrays, held by a scorer (a tuned threshold's,
# a search's) and called by it on arrays; like a ufunc, never called by the pickle itself.
METRICS = "sklearn.metrics."
# What the walk builds for real: arrays and their dtypes (joblib's wrapper reads the dtype to skip the raw bytes
# that follow it), and the harmless builtin containers. Every other class is a stand-in that takes its state.
_BUILT = frozenset({("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.multiarray", "_reconstruct"),
                    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                    ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                    ("numpy.core.numeric", "_frombuffer"), ("copyreg", "_reconstructor")}) | BUILTIN_CLASSES
# Parts of the trusted packages whose classes touch files or the network when built: never trusted.
UNTRUSTED_MODULES = ("numpy.testing", "numpy.lib._datasource", "numpy.lib.npyio", "numpy.lib._npyio_impl",
                     "numpy.ctypeslib", "numpy.f2py", "numpy._core.memmap", "numpy.core.memmap", "scipy.io",
                     "scipy.datasets", "sklearn.datasets", "sklearn.utils._testing")
# What the iris artifacts' walk knows without importing their packages.
_KNOWN = {ARRAY_WRAPPER: Vetted(CLASS), ("numpy", "ndarray"): Vetted(CLASS), ("numpy", "dtype"): Vetted(CLASS),
          **{name: Vetted(REBUILDS, positions) for name, (positions, _) in REBUILDERS.items()},
          **{name: Vetted(CLASS) for name in BUILTIN_CLASSES},
          # The handler's own stand-ins for a booster: their state is which file, which library, classes, features.
          ("shared.boosters", "BoosterClassifier"): Vetted(CLASS),
          ("shared.boosters", "BoosterRegressor"): Vetted(CLASS)}


def _split(qualified: str) -> tuple[str, str]:
    module, _, name = qualified.rpartition(".")
    return module, name


def shown(module: str, name: str) -> str:
    """A name as a person knows it: posix.system (what a pickle of os.system names) is os.system."""
    return f"os.{name}" if module in ("posix", "nt") else f"{module}.{name}"


def _resolved(module: str, name: str) -> Any:
    import importlib

    found = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def vet(module: str, name: str, boosters: bool = False) -> Vetted | str:
    """What `module.name` is when a pickle may name it (`Vetted`); else why it may not, in a few words. `boosters`:
    the import's read of a user's file, where XGBoost's and LightGBM's classes are trusted too."""
    if (module, name) in _KNOWN:
        return _KNOWN[(module, name)]
    package = module.split(".")[0]
    if boosters and package in BOOSTER_PACKAGES:
        try:
            found = _resolved(module, name)
        except (ImportError, AttributeError):
            return f"it needs {package}, which is not installed here (pip install {package})"
        return Vetted(CLASS) if isinstance(found, type) else "it is a function, not a class: unpickling would call it"
    if package not in TRUSTED_PACKAGES:
        return "it is outside scikit-learn, numpy and scipy"
    if any(module == part or module.startswith(part + ".") for part in UNTRUSTED_MODULES):
        return "it reads or writes files, or fetches data"
    try:
        found = _resolved(module, name)
    except (ImportError, AttributeError):
        return "it does not exist in the installed packages"
    if isinstance(found, type):
        return "it opens a file when built" if issubclass(found, np.memmap) else Vetted(CLASS)
    if isinstance(found, np.ufunc):
        return Vetted(UFUNC)
    if name == NEW_OBJECT and module.startswith("sklearn.") and type(found).__name__ == "cython_function_or_method":
        return Vetted(REBUILDS, frozenset({0}))
    if name.startswith(CYTHON_REBUILDER):
        rebuilt = name[len(CYTHON_REBUILDER):]
        try:
            target = _resolved(module, rebuilt)
        except (ImportError, AttributeError):
            return f"it rebuilds {module}.{rebuilt}, which does not exist"
        if not isinstance(target, type):
            return f"it rebuilds {module}.{rebuilt}, which is not a class"
        reason = vet(module, rebuilt)
        return Vetted(REBUILDS, frozenset({0})) if isinstance(reason, Vetted) else f"it rebuilds {rebuilt}: {reason}"
    if module.startswith(METRICS) and callable(found) and not name.startswith("_"):
        return Vetted(METRIC)
    return "it is a function, not a class: unpickling would call it"


def untrusted_reason(module: str, name: str) -> str | None:
    """None if an imported model's pickle may name `module.name`; else why not, in a few words."""
    found = vet(module, name)
    return None if isinstance(found, Vetted) else found


def _refusal(module: str, name: str, estimator_class: str, allowed: frozenset) -> ModelLoadError:
    reason = untrusted_reason(module, name) if (module, name) not in allowed else None
    why = f"; {reason}" if reason else ""
    return ModelLoadError(
        f"pickle allowlist check failed: the artifact names {shown(module, name)}, which a "
        f"{estimator_class.rsplit('.', 1)[-1]} artifact never needs{why}; it is refused before it runs "
        f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in allowed))})")


def allowed_for(estimator_class: str, trusted: tuple[str, ...] = (),
                boosters: bool = False) -> dict[tuple[str, str], Vetted]:
    """What an artifact may name and what each is: ALLOWED, its own class, and the manifest's `trusted` names, each
    vetted again (ModelLoadError naming one that `vet` refuses)."""
    allowed: dict[tuple[str, str], Vetted] = {name: _KNOWN[name] for name in ALLOWED}
    allowed[_split(estimator_class)] = Vetted(CLASS)
    for module, name in sorted({_split(qualified) for qualified in trusted}):
        found = vet(module, name, boosters)
        if not isinstance(found, Vetted):
            raise ModelLoadError(f"pickle allowlist check failed: the manifest trusts {shown(module, name)}, "
                                 f"which is never trusted ({found}); import the model again")
        allowed[(module, name)] = found
    return allowed


class _CallCheck:
    """The rule for calls, in the walk and in the real load: a pickle calls only a vetted class or rebuilder it
    named, and hands a callable (a class, a function, a ufunc, a callable object) only to a rebuilder, only where it
    takes a class. A trusted class built around a callable of the file's choosing could call it."""

    _DEPTH = 3

    def _register(self, module: str, name: str, found: Any, vetted: Vetted) -> Any:
        self._named[id(found)] = (f"{shown(module, name)}", vetted, found)  # kept alive: ids stay unique
        return found

    def _calls(self, callee: Any, args: Any, kwargs: Any = None) -> None:
        named = self._named.get(id(callee))
        if named is None:
            raise ModelLoadError(f"the file calls an object it built ({type(callee).__name__}), not a class or a "
                                 f"rebuilder it names; it is refused before it runs")
        title, vetted, _ = named
        if vetted.callable_value:
            raise ModelLoadError(f"the file calls {title} on values of its own; it is refused before it runs")
        values = list(enumerate(args if isinstance(args, tuple) else ()))
        values += [(-1, value) for value in (kwargs or {}).values()] if isinstance(kwargs, dict) else []
        for position, value in values:
            self._no_callable(title, value, position in vetted.class_positions and vetted.kind == REBUILDS, 0)

    def _no_callable(self, title: str, value: Any, class_allowed: bool, depth: int) -> None:
        named = self._named.get(id(value))
        if named is not None:
            argument, vetted, _ = named
            if vetted.kind == CLASS and class_allowed:
                return
            raise ModelLoadError(f"the file calls {title} with {argument} as an argument, a callable it could call; "
                                 f"it is refused before it runs")
        if isinstance(value, (type, np.ufunc)) or (callable(value) and not isinstance(value, _StandIn)):
            raise ModelLoadError(f"the file calls {title} with a callable argument ({type(value).__name__}); it is "
                                 f"refused before it runs")
        if depth < self._DEPTH and isinstance(value, (list, tuple)):
            for item in value:
                self._no_callable(title, item, False, depth + 1)
        elif depth < self._DEPTH and isinstance(value, dict):
            for item in value.values():
                self._no_callable(title, item, False, depth + 1)

    def load_reduce(self) -> None:
        self._calls(self.stack[-2], self.stack[-1])
        pickle._Unpickler.load_reduce(self)

    def load_newobj(self) -> None:
        self._calls(self.stack[-2], self.stack[-1])
        pickle._Unpickler.load_newobj(self)

    def load_newobj_ex(self) -> None:
        self._calls(self.stack[-3], self.stack[-2], self.stack[-1])
        pickle._Unpickler.load_newobj_ex(self)

    @classmethod
    def dispatching(cls, table: dict) -> dict:
        table = table.copy()
        table[pickle.REDUCE[0]] = cls.load_reduce
        table[pickle.NEWOBJ[0]] = cls.load_newobj
        table[pickle.NEWOBJ_EX[0]] = cls.load_newobj_ex
        return table


class _StandIn:
    """Takes an object's construction and state during the walk, without importing its module; a dict's or a list's
    items too (a Bunch is a dict, and its pickle sets its items)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def _held(self) -> list[Any]:
        return self.__dict__.setdefault("_stand_in_items", [])  # built by __new__ alone, as pickles do

    def __setitem__(self, key: Any, value: Any) -> None:
        self._held().append((key, value))

    def append(self, value: Any) -> None:
        self._held().append(value)

    def extend(self, values: Any) -> None:
        self._held().extend(values)

    def add(self, value: Any) -> None:
        self._held().append(value)


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


class _Walker(_CallCheck, pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be extended, as joblib's
    dispatch = _CallCheck.dispatching(pickle._Unpickler.dispatch)

    def __init__(self, stream: io.BytesIO, estimator_class: str, allowed: dict[tuple[str, str], Vetted],
                 named: dict[int, Any] | None = None) -> None:
        super().__init__(stream)
        self.stream = stream
        self.estimator_class = estimator_class
        self.allowed = allowed
        self._named = {} if named is None else named

    def nested(self) -> "_Walker":
        """A walker of the same kind for a pickle stream inside this one (an object array's)."""
        return _Walker(self.stream, self.estimator_class, self.allowed, self._named)

    def read_exactly(self, size: int) -> None:
        if len(self.stream.read(size)) != size:
            raise EOFError("the artifact ends inside an array's data")

    def find_class(self, module: str, name: str) -> Any:
        vetted = self.allowed.get((module, name))
        if vetted is None:
            raise _refusal(module, name, self.estimator_class, frozenset(self.allowed))
        return self._register(module, name, self.built(module, name), vetted)

    def built(self, module: str, name: str) -> Any:
        """What the walk makes of an allowed name: joblib's wrapper, an array part, or a stand-in."""
        if (module, name) == ARRAY_WRAPPER:
            return _ArrayStandIn
        if (module, name) in _BUILT and (module, name) != ("copyreg", "_reconstructor"):
            return pickle._Unpickler.find_class(self, module, name)  # numpy's (already imported), or a builtin
        return type(name, (_StandIn,), {})

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)
        if isinstance(self.stack[-1], _ArrayStandIn):
            self.stack.pop().skip_data(self)
            self.stack.append(None)

    dispatch[pickle.BUILD[0]] = load_build


class _Survey(_Walker):
    """A walk that lists what a file names, refusing (before anything in it runs) the first name that `vet` does
    not trust, and the first call that breaks the rule for calls."""

    def __init__(self, stream: io.BytesIO, found: set[tuple[str, str]], named: dict[int, Any] | None = None,
                 boosters: bool = False) -> None:
        super().__init__(stream, "", {}, named)
        self.found = found
        self.boosters = boosters

    def nested(self) -> "_Walker":
        return _Survey(self.stream, self.found, self._named, self.boosters)

    def find_class(self, module: str, name: str) -> Any:
        vetted = vet(module, name, self.boosters)
        if not isinstance(vetted, Vetted):
            raise ModelLoadError(f"the file names {shown(module, name)}, which is not trusted ({vetted}); it is "
                                 f"refused before anything in it runs")
        self.found.add((module, name))
        return self._register(module, name, self.built(module, name), vetted)


def survey(payload: bytes, boosters: bool = False) -> tuple[str, ...]:
    """Every name an uncompressed pickle or joblib file names, sorted, each trusted by `vet`; ModelLoadError naming
    the first one that is not, or the first call the rule for calls refuses (nothing in the file runs)."""
    found: set[tuple[str, str]] = set()
    stream = io.BytesIO(payload)
    try:
        _Survey(stream, found, boosters=boosters).load()
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


def restricted_load(payload: bytes, estimator_class: str, trusted: tuple[str, ...] = (), boosters: bool = False
                    ) -> Any:
    """The estimator, unpickled by joblib's own unpickler with the same allowlist and rule for calls in force.
    `boosters`: the import reading a user's file (the handler never loads a booster from a pickle)."""
    from joblib.numpy_pickle import NumpyUnpickler  # only when scikit-learn (which imports joblib) serves

    allowed = allowed_for(estimator_class, trusted, boosters)

    class Restricted(_CallCheck, NumpyUnpickler):
        dispatch = _CallCheck.dispatching(NumpyUnpickler.dispatch)

        def find_class(self, module: str, name: str) -> Any:
            vetted = allowed.get((module, name))
            if vetted is None:
                raise _refusal(module, name, estimator_class, frozenset(allowed))
            return self._register(module, name, super().find_class(module, name), vetted)

    try:
        unpickler = Restricted("artifact", io.BytesIO(payload), ensure_native_byte_order=True)
        unpickler._named = {}
        return unpickler.load()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"the artifact cannot be unpickled ({type(exc).__name__}: {exc})") from None
