"""Import a fitted scikit-learn estimator or Pipeline as a model version that the shared handler serves.

    python -m iris_tools.model_import FILE NAME [--features a,b,c] [--types plan=string,...]
    make import-model FILE=path/to/model.joblib NAME=churn [FEATURES=...] [TYPES=...] [REPLACE=1]

Writes functions/<NAME>/ (IRIS_FUNCTIONS_DIR) and says what it found. Refuses, naming the reason and writing
nothing: a name already taken, a file that is not a fitted classifier or regressor, and a file that names anything
outside scikit-learn's, numpy's and scipy's own classes (docs/models.md lists what is trusted, and why).

Exit status: 0 imported, 1 refused (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iris_tools.cli.failures import EXIT_FAILED
from iris_tools.cli.tables import table
from iris_tools.local.versions import FUNCTIONS_DIR
from iris_tools.model_import.describing import describe
from iris_tools.model_import.reading import ImportRefused, read_model
from iris_tools.model_import.writing import check_name, checked_nan, write_version
from shared.artifact import Manifest, class_key
from shared.boosters import DISTRIBUTIONS


def _shown_estimator(manifest: Manifest) -> str:
    """The estimator as the user saved it; for a booster's, also what the handler serves it as."""
    saved = (manifest.source or {}).get("estimator") or manifest.algorithm
    shown = f"{saved.rsplit('.', 1)[-1]} ({saved})"
    return shown if saved == manifest.algorithm else f"{shown}, served as {manifest.algorithm}"


def summary(manifest: Manifest, directory: Path) -> str:
    rows = [["feature", "type", "values"]]
    for feature in manifest.features:
        values = "-" if feature.categories is None else ", ".join(feature.categories[:8]) + (
            f" (+{len(feature.categories) - 8})" if len(feature.categories) > 8 else "")
        rows.append([feature.name, feature.type, values if feature.type == "string" else "-"])
    lines = [f"imported {manifest.source['file']} as model {manifest.name} ({directory})",
             f"  estimator: {_shown_estimator(manifest)}, a {manifest.task}",
             *(f"  booster: {entry['file']}, {entry['library']}'s own format, loaded by {entry['library']}'s own "
               f"loader (the image installs {entry['library']})" for entry in manifest.boosters),
             table(rows, indent="  ")]
    if manifest.task == "classifier" and not manifest.multi_output:
        lines.append(f"  classes: {', '.join(map(class_key, manifest.class_names))}")
    if manifest.multi_output:
        lines.append(f"  outputs: {manifest.outputs} per row (answered as a list)")
    lines.append(f"  missing values: {'taken (a JSON null, an empty GET value or NaN reaches the model)' if manifest.allow_nan else 'refused (a 400 naming the feature)'}")
    lines.append(f"  trusted: {len(manifest.trusted)} classes of scikit-learn, numpy and scipy (model.json lists them)")
    query = "&".join(f"{f.name}={(f.categories or ('x',))[0] if f.type == 'string' else 0}"
                     for f in manifest.features)
    lines.append(f"next: make demo, then curl 'http://127.0.0.1:<its port>/?{query}'")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.model_import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("name")
    parser.add_argument("--features", default="", help="feature names in order, when the model has none")
    parser.add_argument("--types", default="", help="number or string per feature: plan=string,... or in order")
    parser.add_argument("--replace", action="store_true", help="replace a model imported before under NAME")
    parser.add_argument("--functions-dir", type=Path, default=FUNCTIONS_DIR,
                        help="where model versions live (default: functions/, or IRIS_FUNCTIONS_DIR)")
    args = parser.parse_args(argv)
    functions_dir = args.functions_dir
    try:
        check_name(args.name, functions_dir, args.replace)  # before the file is read: a taken name costs nothing
        loaded = read_model(args.file)
        names = [name.strip() for name in args.features.split(",") if name.strip()] or None
        if loaded.source["format"] in DISTRIBUTIONS and names is None and \
                getattr(loaded.estimator, "feature_names_in_", None) is None:
            raise ImportRefused(f"FILE={args.file}: the {loaded.source['format']} model names no features: give "
                                f"FEATURES= with its {loaded.estimator.n_features_in_} names, in order")
        description = checked_nan(loaded, describe(loaded.estimator, names, args.types or None))
        manifest = write_version(loaded, description, args.name, functions_dir, args.replace)
    except ImportRefused as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - whatever a file does to a library's reader: a refusal, never a traceback
        detail = " ".join(str(exc).split())[:300]
        print(f"error: FILE={args.file}: cannot be imported ({type(exc).__name__}: {detail}); nothing was written",
              file=sys.stderr)
        return EXIT_FAILED
    print(summary(manifest, functions_dir / args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
