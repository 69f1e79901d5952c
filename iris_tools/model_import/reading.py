"""A user's model file read without trusting it: every name it holds is vetted (shared/safe_pickle.py) before
anything in it runs, then it is loaded with exactly those names allowed.

.joblib/.pkl/.pickle: joblib's format or a plain pickle, compressed or not. .skops: skops's own reader, with the
types skops does not trust by itself vetted by the same rules (anything else refused, naming it). .json/.ubj: an
XGBoost model, .txt: a LightGBM model, each read by its library's own loader. An XGBoost or LightGBM wrapper in a
pickle is read (its booster's state is the library's own format) and swapped for the handler's stand-in
(iris_tools/model_import/booster_files.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.cli.failures import ToolError
from iris_tools.environment import ROOT
from iris_tools.model_import.booster_files import (LIGHTGBM_SUFFIXES, XGBOOST_SUFFIXES, BoosterRefused,
                                                   read_native, swap_wrappers)
from shared.artifact import sha256_of
from shared.errors import ModelLoadError
from shared.safe_pickle import restricted_load, shown, survey, untrusted_reason

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
BOOSTER_SUFFIXES = XGBOOST_SUFFIXES + LIGHTGBM_SUFFIXES


class ImportRefused(ToolError):
    """The file cannot be imported; the message says why, and nothing was written."""


@dataclass(frozen=True)
class Loaded:
    estimator: Any  # what is served: any booster swapped for its stand-in
    source: dict[str, str]  # the file's name, format and SHA-256
    original: Any = None  # the estimator as the file holds it, whose own predict the handler's answers must equal

    @property
    def own(self) -> Any:
        return self.estimator if self.original is None else self.original


def _decompressed(path: Path) -> bytes:
    """The pickle stream of a joblib file however joblib compressed it (compress=... writes zlib, gzip, bz2, xz or
    lzma, each known by its first bytes), or of a plain pickle."""
    import bz2
    import gzip
    import lzma
    import zlib

    data = path.read_bytes()
    openers = ((b"\x1f\x8b", gzip.decompress), (b"BZh", bz2.decompress), (b"\xfd7zXZ", lzma.decompress),
               (b"]\x00\x00", lambda raw: lzma.decompress(raw, format=lzma.FORMAT_ALONE)), (b"\x78", zlib.decompress))
    for prefix, decompress in openers:
        if data.startswith(prefix):
            try:
                return decompress(data)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
                raise ImportRefused(f"FILE={path}: looks compressed but does not decompress ({exc})") from None
    return data


def read_model(path: Path) -> Loaded:
    if not path.is_file():
        raise ImportRefused(f"FILE={path}: no such file")
    suffix = path.suffix.lower()
    source = {"file": path.name, "sha256": sha256_of(path.read_bytes())}
    if suffix == SKOPS_SUFFIX:
        return Loaded(_read_skops(path), {**source, "format": "skops"})
    if suffix in BOOSTER_SUFFIXES:
        try:
            native = read_native(path)
        except BoosterRefused as exc:
            raise ImportRefused(f"FILE={path}: {exc}") from None
        return Loaded(native.estimator, {**source, "format": native.estimator.library,
                                          "estimator": f"{native.estimator.library}.Booster"})
    if suffix not in PICKLE_SUFFIXES:
        raise ImportRefused(f"FILE={path}: expected a {', '.join(PICKLE_SUFFIXES + (SKOPS_SUFFIX,))} file, or a "
                            f"booster's own ({', '.join(XGBOOST_SUFFIXES)} XGBoost, {', '.join(LIGHTGBM_SUFFIXES)} "
                            f"LightGBM)")
    try:
        payload = _decompressed(path)
        names = survey(payload, boosters=True)  # nothing in the file has run yet
        classes = [name for name in names if name.split(".")[0] in ("sklearn", "xgboost", "lightgbm")]
        if not classes:
            raise ModelLoadError("the file holds no scikit-learn estimator")
        if any(name.split(".")[0] in ("xgboost", "lightgbm") for name in names):
            _rehearsed(payload, classes[0], names)  # a booster's bytes are parsed by its library's C++ reader
        estimator = restricted_load(payload, classes[0], names, boosters=True)
        if not any(name.split(".")[0] in ("xgboost", "lightgbm") for name in names):
            return Loaded(estimator, {**source, "format": "joblib"})
        swapped = swap_wrappers(restricted_load(payload, classes[0], names, boosters=True))
    except ModelLoadError as exc:
        raise ImportRefused(f"FILE={path}: {exc}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ImportRefused(f"FILE={path}: not a model file joblib can read ({exc})") from None
    return Loaded(swapped, {**source, "format": "joblib",
                            "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}"},
                  original=estimator)


REHEARSAL = ("import sys\n"
             "from shared.safe_pickle import restricted_load\n"
             "restricted_load(open(sys.argv[1], 'rb').read(), sys.argv[2], tuple(sys.argv[3:]), boosters=True)\n")


def _rehearsed(payload: bytes, estimator_class: str, names: tuple[str, ...]) -> None:
    """The load, first in a process of its own: a booster's state is parsed by its library's C++ reader, which a
    corrupt file can crash; a crash there is a refusal here (ModelLoadError), never the import's death."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="import-", suffix=".pickle") as held:
        held.write(payload)
        held.flush()
        try:
            result = subprocess.run([sys.executable, "-c", REHEARSAL, held.name, estimator_class, *names],
                                    cwd=ROOT, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ModelLoadError("reading its booster did not finish in 300 s") from None
    if result.returncode < 0:
        raise ModelLoadError(f"its booster's library crashed reading it (signal {-result.returncode}): the file is "
                             f"corrupt")


def _read_skops(path: Path) -> Any:
    try:
        import skops.io
    except ImportError:
        raise ImportRefused("a .skops file needs skops: pip install skops (requirements-tools.txt has it)") from None
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: said, never a traceback
        raise ImportRefused(f"FILE={path}: not a skops file skops can read ({type(exc).__name__}: {exc})") from None
    refused = []
    for qualified in untrusted:
        module, _, name = qualified.rpartition(".")
        reason = untrusted_reason(module, name)
        if reason is not None:
            refused.append(f"{shown(module, name)} ({reason})")
    if refused:
        raise ImportRefused(f"FILE={path}: skops lists types it does not trust, and these are not trusted here "
                            f"either: {', '.join(refused)}; nothing in the file was run")
    try:
        return skops.io.load(path, trusted=untrusted)
    except Exception as exc:  # noqa: BLE001
        raise ImportRefused(f"FILE={path}: skops could not load it ({type(exc).__name__}: {exc})") from None
