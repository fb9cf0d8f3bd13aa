"""``ufm compare``: trained features against the certified UFM optimum (theory_checks.compare)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ufm.app import cli_values as values
from ufm.app.options import add_problem_options, given, problem_from_args, refuse
from ufm.app.parsing import cache_option, output_options
from ufm.app.render import figure_target, finish_figure, fmt, print_json, print_table
from ufm.app.running import start_work, timed, timings_line
from ufm.errors import ProblemError

if TYPE_CHECKING:
    from ufm.app.parsing import Parser

#: Reading a text file parses it into Python objects first: up to this many bytes.
MAX_CSV_BYTES = 512 * 2 ** 20
SUFFIXES = (".npy", ".npz", ".csv")


def _too_large(path: Path, budget: int) -> None:
    size = path.stat().st_size
    if size > budget:
        raise ProblemError(f"{path} holds {size / 2 ** 30:.2f} GiB, more than the {budget / 2 ** 30:.2f} GiB this "
                           "command reads; pass a .npy file (read in blocks from disk) or fewer rows")


def _load_array(path: Path, what: str) -> np.ndarray:
    """An array from a ``.npy`` file (memory-mapped) or a ``.csv``/``.txt`` file (numbers only)."""
    from solvers.sizing import memory_budget

    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        _too_large(path, min(MAX_CSV_BYTES, memory_budget() // 8))
        return np.loadtxt(path, delimiter=",", ndmin=1 if what == "labels" else 2)
    except (ValueError, OSError) as err:
        first = (str(err).splitlines()[0] if str(err) else type(err).__name__).split(";")[0]
        raise ProblemError(f"cannot read the {what} from {path}: {first}; write them as a .npy array or a "
                           "CSV of numbers with the same number of columns in every row") from None


def read_features(path: Path, labels_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, d), labels (n,))`` from FEATURES and ``--labels`` (docs/cli.md ``ufm compare``)."""
    if path.suffix not in SUFFIXES:
        raise ProblemError(f"{path}: the features must be a .npy, .npz or .csv file (got {path.suffix or 'no suffix'})")
    if path.suffix == ".npz":
        if labels_path is not None:
            raise ProblemError("--labels does not apply to a .npz file (its array 'labels' holds them); drop it")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "features" not in data or "labels" not in data:
                    raise ProblemError(f"{path} must hold arrays named 'features' and 'labels' "
                                       f"(it holds {', '.join(data.files) or 'none'})")
                return np.asarray(data["features"]), np.asarray(data["labels"])
        except (ValueError, OSError) as err:
            raise ProblemError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if path.suffix == ".csv":
        if labels_path is not None:
            raise ProblemError("--labels does not apply to a .csv file (its last column holds them); drop it")
        table = _load_array(path, "features")
        if table.shape[1] < 2:
            raise ProblemError(f"{path}: each row needs the features and, last, the label (got {table.shape[1]} column)")
        return table[:, :-1], table[:, -1]
    if labels_path is None:
        raise ProblemError(f"{path} holds the features only: give their labels with --labels LABELS.npy")
    return _load_array(path, "features"), _load_array(labels_path, "labels")


def _problem(args: argparse.Namespace, labels: np.ndarray):
    """The run's problem: the counts from the labels, the rest from the options."""
    refuse(given(args, "counts", "classes", "imbalance", "n_max", "ratio", "minority_fraction"),
           "to compare (the class counts come from the labels)")
    args.counts = [int(c) for c in np.bincount(labels.astype(np.int64))]
    return problem_from_args(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from theory_checks.compare import check_features

    H, labels = check_features(*read_features(args.features, args.labels))
    problem = _problem(args, labels)
    classifier = None if args.classifier_weights is None else _load_array(args.classifier_weights, "classifier")
    path = figure_target(args, "ufm-compare.png")          # None with --json and no --out
    if args.validate_only:
        return 0
    start_work(args, "theory_checks.compare", "ufm.app.plots")
    from theory_checks.compare import compare_features

    result = compare_features(H, labels, problem, classifier, normalize=not args.no_normalize)
    data = result.to_dict()
    if not args.json:
        _print(data)
    if path is not None:
        from ufm.app.plots import comparison_figure
        finish_figure(comparison_figure(result), data, args, path, "compare")      # the figure's path and the seconds
    elif args.json:
        print_json(timed(args, data, "compare"))
    else:
        print(f"seconds: {timings_line(timed(args, {}, 'compare'))}")
    return 0


def _print(data: dict) -> None:
    rows = [(name, fmt(data[key], 4)) for name, key in
            (("NC1 (Papyan, / k)", "nc1"), ("within-class spread", "within_class"), ("equinorm (NC2)", "equinorm"),
             ("equiangularity (NC2)", "equiangularity"), ("nearest-class-mean agreement (NC4)", "ncc_agreement"))]
    if "self_duality" in data:
        rows.append(("self-duality (NC3)", fmt(data["self_duality"], 4)))
    rows += [("distance to predicted", fmt(data["distance"]["predicted"], 4)),
             ("distance to ETF", fmt(data["distance"]["etf"], 4)), ("distance to OF", fmt(data["distance"]["of"], 4)),
             ("predicted", f"{data['predicted']['geometry']} ({data['predicted']['status']})")]
    print_table(rows, ("quantity", "value"))
    print("cosines between class means (features | UFM optimum):")
    for mine, theirs in zip(data["class_mean_gram"], data["predicted"]["class_mean_gram"]):
        print("  " + " ".join(f"{v:+.3f}" for v in mine) + "   |   " + " ".join(f"{v:+.3f}" for v in theirs))


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``compare`` subcommand and its options."""
    cmp = sub.add_parser("compare", help="trained features against the certified UFM optimum")
    cmp.add_argument("features", type=values.readable_file,
                     help="features: .npy (labels from --labels), .npz (arrays features, labels) or .csv "
                          "(the label in the last column)")
    cmp.add_argument("--labels", type=values.readable_file, help="labels (n,) as .npy or one per line, with a .npy FEATURES")
    cmp.add_argument("--classifier-weights", type=values.readable_file,
                     help="the last layer's rows W (k, d) as .npy, for NC3 self-duality")
    cmp.add_argument("--no-normalize", action="store_true", help="keep the rows' norms (SCL normalises them)")
    add_problem_options(cmp)
    output_options(cmp, figure=True)
    cache_option(cmp)
    cmp.set_defaults(handler=cmd_compare)
