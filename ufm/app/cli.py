"""The ``ufm`` command (its contract: docs/cli.md): argument parsing, checks and output only.

Exit codes: 0 success; 1 a solver failure or a result the certificate does not prove (``error``,
``not_converged``, ``stationary``, ``optimal_inaccurate``), or an internal error; 2 bad input. Bad input is caught before any
work: every value by its ``argparse`` type (:mod:`ufm.app.cli_values`), every combination of options and
the memory a run would need (:mod:`solvers.sizing`) by the command's checks; it ends with one line
``ufm <command>: error: ...`` on stderr naming the problem and the fix, never a traceback. With
``--json`` a JSON object is printed on stdout whatever the exit code (``{"error", "exit_code"}`` where
nothing was computed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ufm.app import cli_values as values
from ufm.app import signals
from ufm.app.progress import Ticker, progress
from ufm.app.timings import CallClock
from ufm.batching import Batching, check_conditions
from ufm.atomic import write_text_atomically
from ufm.errors import OutputError, ProblemError
from ufm.lognumber import LogNumber
from ufm.objectives import OBJECTIVES, ObjectiveOptions
from ufm.objectives.ce_options import CLASSIFIERS, WEIGHT_DECAY_MAX, WEIGHT_DECAY_MIN
from ufm.objectives.scl_options import SCL
from ufm.problem import IMBALANCE_PROFILES, SEED_MAX, TAU_MAX, TAU_MIN, Problem, Prototypes, uses_tau


class UsageError(ProblemError):
    """Bad command-line input found by ``argparse`` (an unknown option, a bad value)."""


class Exit(Exception):
    """End the command with ``code``, its output (and error line) already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Parser(argparse.ArgumentParser):
    """``argparse`` that raises :class:`UsageError` (one line, exit 2 in :func:`main`) instead of
    printing the usage and exiting, and that never expands an abbreviated option."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------- problem options (shared)
#: Most batches an epoch may hold: drawing and packing them is a Python loop per batch.
MAX_BATCHES = 100_000
#: Memory that parsing a JSON batches file takes per byte of the file (Python's lists and ints;
#: measured 22 bytes a byte on a 29 MB file), checked before it is read.
PARSE_BYTES_PER_BYTE = 25
#: Largest embedding dimension beyond the number of rows: extra dimensions add nothing (the rows span at
#: most n of them) but cost memory and time (an over-parameterised d is allowed up to this).
MAX_SPARE_DIM = 1024

#: Defaults of the problem options (docs/cli.md "Describing a problem"). The parser's own default is None
#: so that an option the user gave can be told from one left out: an option that does not apply to
#: what the others describe is an error, not ignored.
PROBLEM_DEFAULTS = {"classes": 4, "imbalance": "balanced", "n_max": 10, "ratio": 1.0, "minority_fraction": 0.5,
                    "tau": 1.0, "batching": "full", "prototypes": "none", "prototypes_per_class": 1,
                    "prototype_anchors": "yes", "seed": 0, "loss": "scl"}

TAU = values.real(TAU_MIN, TAU_MAX)
SEED = values.integer(0, SEED_MAX)
CLASSES = values.integer(2, values.MAX_CLASSES)
N_MAX = values.integer(2, 10 ** 12)
RATIO = values.real(1, 10 ** 12)
FRACTION = values.real(0, 1, lo_open=True, hi_open=True)
DIM = values.integer(1, 10 ** 6)


def add_objective_options(g) -> None:
    """--loss, --classifier and --weight-decay (``solve``, ``predict`` and the imbalance and
    temperature sweeps)."""
    g.add_argument("--loss", choices=tuple(OBJECTIVES), help="objective: supervised contrastive (scl, the default), "
                   "cross-entropy (ce, docs/theory.md section 10), or another registered loss")
    g.add_argument("--classifier", choices=CLASSIFIERS,
                   help="with --loss ce: fixed ETF or orthogonal-frame rows, or a learned classifier")
    g.add_argument("--weight-decay", type=values.real(WEIGHT_DECAY_MIN, WEIGHT_DECAY_MAX),
                   help=f"with --classifier learned: lambda in [{WEIGHT_DECAY_MIN:g}, {WEIGHT_DECAY_MAX:g}]")


def add_problem_options(parser: argparse.ArgumentParser, batching: bool = True,
                        prototypes: bool = True, objective: bool = False) -> None:
    """The options of docs/cli.md "Describing a problem" (``objective``: also --loss, --classifier and
    --weight-decay)."""
    g = parser.add_argument_group("problem")
    if objective:
        add_objective_options(g)
    g.add_argument("--counts", type=values.counts,
                   help="class counts, e.g. 8,8,2,2 (instead of --classes/--imbalance/--n-max/--ratio)")
    g.add_argument("--classes", type=CLASSES, help="number of classes K (default 4)")
    g.add_argument("--imbalance", choices=IMBALANCE_PROFILES, help="count profile (default balanced)")
    g.add_argument("--n-max", type=N_MAX, help="examples in the largest class (default 10)")
    g.add_argument("--ratio", type=RATIO,
                   help="imbalance ratio R = n_max / n_min >= 1, with --imbalance step or long-tail; "
                        "n_max / R must be a whole number")
    g.add_argument("--minority-fraction", type=FRACTION,
                   help="fraction of minority classes, with --imbalance step (default 0.5)")
    g.add_argument("--tau", type=TAU, help=f"temperature in [{TAU_MIN:g}, {TAU_MAX:g}] (default 1.0)")
    g.add_argument("--relu", action="store_true", help="nonnegative embeddings (ReLU; default off)")
    g.add_argument("--dim", type=DIM, help="embedding dimension (default k; 2k with --relu)")
    if batching:
        g.add_argument("--batching", choices=("full", "random", "balanced", "binding"),
                       help="batching scheme (default full)")
        g.add_argument("--batch-size", type=values.integer(2), help="batch size, with --batching other than full")
        g.add_argument("--batches-file", type=values.readable_file,
                       help="JSON list of lists of example indices (examples numbered class by class)")
    if prototypes:
        g.add_argument("--prototypes", choices=("none", "etf", "of"), help="fixed prototypes (default none)")
        g.add_argument("--prototypes-per-class", type=values.integer(1, 1000),
                       help="prototypes per class, with --prototypes etf|of (default 1)")
        g.add_argument("--prototype-anchors", choices=("yes", "no"),
                       help="with --prototypes: whether prototypes are anchors too ((P-b), default yes) "
                            "or not ((P-a))")
    g.add_argument("--seed", type=SEED, help=f"seed of every random choice, 0..{SEED_MAX} (default 0)")


def _given(args: argparse.Namespace, *names: str) -> list[str]:
    """The options among ``names`` (attribute names) that the user gave, as ``--option`` strings."""
    return ["--" + name.replace("_", "-") for name in names
            if getattr(args, name, None) is not None and getattr(args, name, None) is not False]


def _option(args: argparse.Namespace, name: str):
    value = getattr(args, name, None)
    return PROBLEM_DEFAULTS[name] if value is None else value


def refuse(options: list[str], why: str) -> None:
    """Raise the error for options that do not apply (``why`` says what they need)."""
    if options:
        raise ProblemError(f"{options[0]} does not apply {why}; drop it")


def problem_counts(args: argparse.Namespace) -> list[int]:
    """The class counts the options describe (``--counts``, or a profile), after checking that no
    option is given that the choice makes meaningless."""
    if args.counts is not None:
        refuse(_given(args, "classes", "imbalance", "n_max", "ratio", "minority_fraction"),
               "with --counts (the counts give every class)")
        single = [c for c in args.counts if c < 2]
        if single and _option(args, "loss") == "scl":
            raise UsageError(f"argument --counts: a class with {single[0]} example(s) has no positive pair; every "
                             f"count must be at least 2 (got {','.join(map(str, args.counts))}) "
                             f"(see {args.command_name} --help)")
        return list(args.counts)
    imbalance = _option(args, "imbalance")
    if imbalance == "balanced":
        refuse(_given(args, "ratio", "minority_fraction"), "to balanced classes (use --imbalance step or long-tail)")
    else:
        if args.ratio is None:
            raise ProblemError(f"--imbalance {imbalance} needs --ratio R (R = n_max / n_min >= 1)")
        if imbalance == "long-tail":
            refuse(_given(args, "minority_fraction"), "to --imbalance long-tail (only step has minority classes)")
    from ufm.problem import profile_counts
    return profile_counts(imbalance, _option(args, "classes"), _option(args, "n_max"), _option(args, "ratio"),
                          args.minority_fraction)


def _batching(args: argparse.Namespace) -> Batching:
    if getattr(args, "batches_file", None) is not None:
        refuse(_given(args, "batching", "batch_size"), "with --batches-file (the file gives the batches)")
        from solvers import sizing

        path = Path(args.batches_file)
        size = path.stat().st_size if path.is_file() else 0
        sizing.require(size * PARSE_BYTES_PER_BYTE, f"reading the batches file {path} ({size / 2 ** 20:.1f} MiB)",
                       "write fewer, larger batches, or use a batching scheme (--batching)")
        return Batching.from_file(path, max_batches=MAX_BATCHES)
    scheme = _option(args, "batching")
    if scheme == "full":
        refuse(_given(args, "batch_size"), "to full batching (use --batching random, balanced or binding)")
        return Batching.full()
    if args.batch_size is None:
        raise ProblemError(f"--batching {scheme} needs --batch-size B")
    return Batching(scheme, batch_size=args.batch_size)


def _prototypes(args: argparse.Namespace) -> Prototypes | None:
    kind = _option(args, "prototypes")
    if kind == "none":
        refuse(_given(args, "prototypes_per_class", "prototype_anchors"), "without --prototypes etf|of")
        return None
    return Prototypes(kind, _option(args, "prototypes_per_class"), _option(args, "prototype_anchors") == "yes")


def problem_from_args(args: argparse.Namespace) -> Problem:
    """Build (and so validate) the Problem that the options describe; its size is checked before any
    array of n entries exists."""
    from solvers import sizing

    counts = problem_counts(args)
    n = sum(counts)
    batching = _batching(args) if hasattr(args, "batching") else Batching.full()
    prototypes = _prototypes(args) if hasattr(args, "prototypes") else None
    p = 0 if prototypes is None else len(counts) * prototypes.per_class
    if batching.scheme in ("random", "balanced", "binding") and not 2 <= batching.batch_size < n:
        batching.validate(counts)                      # the one-line message of a batch size out of range
    batches, _ = sizing.batching_shape(counts, batching, p)
    if batches > MAX_BATCHES:
        raise ProblemError(f"the batching cuts n = {n} examples into {batches} batches per epoch, more than "
                           f"{MAX_BATCHES}; use larger batches")
    sizing.require(sizing.input_bytes(counts, batching, p),
                   f"a problem of n = {n} examples (labels and one epoch of batches)", "lower the counts")
    if args.dim is not None and args.dim > max(n + p, MAX_SPARE_DIM):
        raise ProblemError(f"--dim {args.dim} exceeds both the {n + p} rows (examples and prototypes), which span "
                           f"at most {n + p} dimensions, and {MAX_SPARE_DIM}; use a smaller --dim")
    objective = _objective(args)
    if not uses_tau(objective):
        refuse(_given(args, "tau"), f"to {objective.describe()} (it has no temperature)")
    return Problem.from_counts(counts, tau=_option(args, "tau") if uses_tau(objective) else None, relu=args.relu,
                               dim=args.dim,
                               batching=batching, prototypes=prototypes, seed=_option(args, "seed"),
                               objective=objective)


#: The command's options that belong to one objective (its options class lists its own in ``CLI_FLAGS``).
OBJECTIVE_FLAGS = ("classifier", "weight_decay")


def _objective(args: argparse.Namespace) -> ObjectiveOptions:
    """The options of the registered loss that --loss names, built from the flags its options class
    lists (``CLI_FLAGS``, ``from_cli``); the other objectives' flags are refused."""
    name = _option(args, "loss")
    options = OBJECTIVES.options(name)
    own = tuple(getattr(options, "CLI_FLAGS", ()))
    refuse(_given(args, *(f for f in OBJECTIVE_FLAGS if f not in own)), f"to --loss {name}")
    if not options.batched:
        refuse(_given(args, "batching", "batch_size", "batches_file", "prototypes"),
               f"to --loss {name} (a sum over examples: full batch, no prototypes)")
    build = getattr(options, "from_cli", None)
    return build({f: getattr(args, f, None) for f in own}) if build is not None else options()


def _check_seed_range(seed: int, starts: int) -> None:
    """Starts use the seeds seed, seed + 1, ...: the last must be a valid seed."""
    if seed + starts - 1 > SEED_MAX:
        raise ProblemError(f"--starts {starts} from --seed {seed} runs past the largest seed {SEED_MAX}; "
                           "lower one of them")


def _refuse_unused_seed(args: argparse.Namespace, problem: Problem, command: str) -> None:
    """``--seed`` where nothing is random (no reshuffled batching) changes nothing: an error."""
    if not problem.batching.is_random:
        refuse(_given(args, "seed"), f"to {command} with a {problem.batching.scheme} batching (nothing is random)")


# ---------------------------------------------------------------- output helpers
#: A LogNumber in the JSON text: its decimal, unquoted (a JSON number below float64's range).
_EXACT = "\u0000exact:"


def to_jsonable(value):
    """Convert NumPy / JAX values inside dicts and lists to plain JSON types (a
    :class:`ufm.lognumber.LogNumber` to a marker that :func:`json_text` writes as its decimal)."""
    if isinstance(value, LogNumber):
        return _EXACT + value.decimal()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def json_text(obj) -> str:
    """The JSON text of a report: numbers below float64's range (LogNumber) written in full, as JSON
    number literals (``json.loads(text, parse_float=decimal.Decimal)`` keeps them)."""
    text = json.dumps(to_jsonable(obj), indent=2)
    return re.sub(r'"\\u0000exact:([0-9.e+-]+)"', r"\1", text)


def print_json(obj) -> None:
    print(json_text(obj))


def print_table(rows: Sequence[Sequence], header: Sequence[str]) -> None:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value, digits: int = 10) -> str:
    if isinstance(value, LogNumber):
        return value.decimal(digits)
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


def _print_solution(report: dict) -> None:
    print(f"method {report['method']}  counts {report['counts']}  tau {report['tau']}  relu {report['relu']}  "
          f"dim {report['dim']}  batching {report['batching']}")
    rows = [("loss (sum)", _fmt(report["loss"], 12)), ("excess (loss - constant)", _fmt(report["excess"], 6)),
            ("lower bound", _fmt(report["lower_bound"], 12))]
    cert = report.get("certificate")
    if cert is not None:
        rows.append(("certificate", f"relative gap {cert['relative_gap']:.3g} on the excess "
                                    f"({'certified' if cert['certified'] else 'not certified'}, "
                                    f"{cert['method']}, {cert['seconds']:.2g} s)"))
    if "starts" in report:
        st = report["starts"]
        rows.append(("starts", f"{st['tried']} tried: {st['optimal']} optimal, {st['stationary']} stationary, "
                               f"{st['not_converged']} not converged, {st['error']} error; kept #{st['kept']}"))
    rows += [("predicted", f"{report['predicted']['geometry']} (loss {_fmt(report['predicted']['loss'], 12)})"),
             ("distance to ETF", _fmt(report["distance"]["etf"], 4)),
             ("distance to OF", _fmt(report["distance"]["of"], 4)),
             ("distance to predicted", _fmt(report["distance"]["predicted"], 4)),
             ("NC1", _fmt(report["nc1"], 4)),
             ("within-class spread", _fmt(report.get("within_class"), 4)),
             ("status", report["status"] + (f" ({report['message']})" if report["message"] else "")),
             ("iterations", report["iterations"]), ("seconds", timings_line(report))]
    print_table(rows, ("quantity", "value"))
    print("class-mean Gram:")
    for row in np.asarray(report["class_mean_gram"]):
        print("  " + " ".join(f"{v:+.4f}" for v in row))
    print(f"why: {report['predicted']['why']}")


def _status_points(result, select) -> list[str]:
    """'series at x: status' for every sweep point whose solver status ``select`` accepts."""
    return [f"{name} at {x:g}: {status}" for name, q in result.series.items()
            for x, status in zip(result.x, q.get("status", [])) if select(status)]


def _print_sweep(result) -> None:
    """One table per series (rows: swept values; columns: every quantity), then any solver trouble."""
    counts = result.meta.get("counts")
    if not (isinstance(counts, list) and len(counts) == len(result.x)
            and all(isinstance(c, (list, tuple)) for c in counts)):
        counts = None                     # one count vector for the whole sweep: in the title instead
    for name, quantities in result.series.items():
        print(f"{name}:")
        header = [result.xlabel] + (["counts"] if counts else []) + list(quantities)
        rows = []
        for i, x in enumerate(result.x):
            row = [f"{x:g}"] + ([",".join(map(str, counts[i]))] if counts else [])
            row += [_fmt(values[i], 6) if isinstance(values[i], (int, float)) else values[i]
                    for values in quantities.values()]
            rows.append(row)
        print_table(rows, header)
        print()
    trouble = _status_points(result, lambda status: status not in ("optimal", "converged"))
    if trouble:
        print("solver status not optimal at: " + "; ".join(trouble))
    if counts is None and result.meta.get("counts"):
        print(f"counts: {result.meta['counts']}")
    if result.meta.get("tau") is not None:
        print(f"tau: {result.meta['tau']:g}")


# ---------------------------------------------------------------- commands
def start_work(args: argparse.Namespace, *modules: str) -> None:
    """Every check has passed: turn the compile cache on (unless ``--no-cache`` or ``UFM_NO_CACHE``;
    :func:`ufm.compile_cache.enable_compile_cache`), import the ``modules`` the work needs, and end the
    ``startup`` phase of the call's clock."""
    import importlib

    from ufm import compile_cache

    if not (args.no_cache or compile_cache.cache_disabled_by_environment()):
        compile_cache.enable_compile_cache()
    for module in modules:
        importlib.import_module(module)
    args.clock.mark("startup")


def timed(args: argparse.Namespace, report: dict, phase: str, inner: dict | None = None) -> dict:
    """``report`` with ``seconds`` (the call's wall time so far) and ``timings`` (its split,
    :class:`ufm.app.timings.CallClock`), ``phase`` ending now."""
    args.clock.mark(phase)
    seconds, timings = args.clock.split(inner)
    return dict(report, seconds=seconds, timings=timings)


def timings_line(report: dict) -> str:
    """``seconds 4.2 (startup 0.9, compile 2.1, solve 0.3, ...)`` for the text output."""
    parts = ", ".join(f"{k} {v:.2g}" for k, v in report["timings"].items())
    return f"{report['seconds']:.3g} s wall ({parts})"


# Each command checks everything first (values, combinations, memory, output paths) and returns 0
# right there when ``args.validate_only`` (main(..., validate_only=True): what the fuzz tests and a
# script's pre-flight use); only then does it compute.

def cmd_batches_check(args: argparse.Namespace) -> int:
    from solvers import sizing

    refuse(_given(args, "tau", "relu", "dim"), "to batches check (the conditions depend on the counts and "
                                               "the batches only)")
    problem = problem_from_args(args)
    _refuse_unused_seed(args, problem, "batches check")
    sizing.require(sizing.conditions_bytes(problem), f"checking this batching (k = {problem.k})",
                   "use larger batches or fewer classes")
    if args.validate_only:
        return 0
    start_work(args, "ufm.batching")
    _, proto_labels = problem.prototype_rows()
    batches = problem.batches(epoch=0)
    result = check_conditions(problem.labels, batches, proto_labels).to_dict()
    result.update(problem=problem.describe(), n_batches=len(batches))
    result = timed(args, result, "check")
    if problem.batching.is_random:
        result["note"] = ("random scheme: checked on the batches of epoch 0; "
                          "later epochs reshuffle")
    if args.json:
        print_json(result)
        return 0
    print(f"batching: {problem.batching.scheme}, {len(batches)} batch(es), counts {list(problem.counts)}")
    print(f"neural collapse guaranteed (ReLU): {'yes' if result['neural_collapse'] else 'no'}")
    print(f"orthogonal frame guaranteed (ReLU): {'yes' if result['orthogonal_frame'] else 'no'}")
    v = result["violations"]
    for d in v["disconnected_classes"]:
        print(f"  class {d['class']}: its examples fall into {d['components']} pieces that never share a batch")
    for a, b in v["unmet_pairs"]:
        print(f"  classes {a} and {b} never meet in a batch where one of them has a positive")
    if "note" in result:
        print(f"note: {result['note']}")
    return 0


GD_ONLY = ("steps", "lr", "tol", "starts", "float32", "no_certify", "chunk_size")


def _lanes(problem: Problem, starts: int) -> int:
    """How many of ``starts`` starts gradient descent runs side by side (``solvers.sizing.default_lanes``),
    from the batch width alone (no batch is drawn)."""
    from solvers import sizing

    return sizing.default_lanes(problem, starts, width=sizing.batch_shape(problem)[1]) if starts > 1 else 1


def _check_solve_options(args: argparse.Namespace) -> None:
    """The rules of ``solve`` that the options decide alone (checked before the problem is built: a
    reshuffled batching is validated on its drawn batches, which loads JAX)."""
    from solvers import defaults

    if args.method != "gd" and _option(args, "loss") != "scl":
        raise ProblemError(f"--method {args.method} solves the SCL programs; --loss ce runs with --method gd")
    if args.method != "gd":
        refuse(_given(args, *GD_ONLY), f"to --method {args.method} (gradient descent options; the convex "
                                       "programs run in float64 and are always judged by their certificate)")
    if args.no_certify:
        refuse(_given(args, "gap_tol"), "with --no-certify (no certificate, so no gap)")
    if _option(args, "loss") != "scl":
        refuse(_given(args, "chunk_size"), "to --loss ce (it evaluates SCL's anchors in row blocks)")
    if args.starts is not None and args.seed is not None:
        _check_seed_range(args.seed, args.starts)
    if args.method == "reduced":
        scheme = "explicit" if args.batches_file is not None else _option(args, "batching")
        defaults.check_reduced_applies(scheme, _option(args, "prototypes") != "none")


def _check_solve(args: argparse.Namespace, problem: Problem) -> None:
    """What the built problem decides: the method must apply to it and the run must fit in memory."""
    from solvers import defaults, sizing

    if args.method == "gd" and problem.batching.is_random:
        draws = (args.steps or defaults.DEFAULT_STEPS) * sizing.batch_shape(problem)[0]
        if draws > MAX_BATCHES * 10:
            raise ProblemError(f"a reshuffled batching draws every epoch's batches before the first step: "
                               f"{draws} batches for these --steps, more than {MAX_BATCHES * 10}; lower --steps")
    if args.chunk_size is not None and args.chunk_size > (widest := sizing.batch_shape(problem)[1]):
        raise ProblemError(f"--chunk-size {args.chunk_size} exceeds the widest batch ({widest} rows); use at "
                           f"most {widest}, or leave it out")
    if args.method == "gd":
        starts = args.starts or 1
        need = sizing.gd_bytes(problem, args.steps or defaults.DEFAULT_STEPS, args.chunk_size, starts,
                               certify=not args.no_certify, lanes=_lanes(problem, starts))
        ways = ("evaluate the loss in row blocks (--chunk-size C, memory ~ C n), use mini-batches "
                "(--batching random --batch-size B)")
        if problem.is_full_batch and problem.prototypes is None:
            ways += ", or solve the reduced program (--method reduced; counts enter only as weights)"
        sizing.require(need, f"gradient descent on n = {problem.n} (d = {problem.dim}, widest batch "
                             f"{sizing.batch_shape(problem)[1]})", ways)
    elif args.method == "reduced":
        defaults.check_reduced_applies(problem.batching.scheme, problem.prototypes is not None)
        if not problem.relu and problem.dim < problem.k - 1:
            raise ProblemError(f"--method reduced has no rank constraint, so it needs dim >= k - 1 = "
                               f"{problem.k - 1} (got --dim {problem.dim}); use --method gd")
        sizing.require(sizing.reduced_bytes(problem), f"the reduced program at k = {problem.k}",
                       "use fewer classes, or ufm predict")
    else:
        sizing.require_relaxation(problem)
        if not problem.batching.is_random and not (problem.relu and problem.prototypes is None):
            refuse(_given(args, "seed"), "to --method convex here (nothing is random: no reshuffled batching, "
                                         "and the Gram is factored by its eigenvectors; only the nonnegative "
                                         "factor under ReLU starts from a seed)")


def _solve_label(args: argparse.Namespace, problem) -> str:
    """What ``ufm solve`` is doing, for its progress line."""
    what = {"gd": "gradient descent" + (f", {args.starts} starts" if args.starts and args.starts > 1 else ""),
            "convex": "the n x n convex program", "reduced": "the reduced program"}[args.method]
    return f"solve: {what}, n = {problem.n}" + (" + certificate" if not args.no_certify else "")


def _certificate_work(solutions) -> float:
    """Seconds the certificates of ``solutions`` took, less the compile made in them."""
    return sum(s.certificate.seconds - s.certificate.compile_seconds for s in solutions
               if s.certificate is not None)


def _run_solve(args: argparse.Namespace, problem, certify: bool, gap_tol: float):
    """The solve ``ufm solve`` asked for (method, starts, options): ``(solution, seconds of its
    certificates' own work)``."""
    from theory_checks.report import best_start

    if args.method == "gd":
        import jax.numpy as jnp
        from solvers import gd

        options = {key: value for key, value in (("steps", args.steps), ("learning_rate", args.lr),
                                                 ("tol", args.tol), ("chunk_size", args.chunk_size))
                   if value is not None}
        if args.float32:
            options["dtype"] = jnp.float32
        seed = _option(args, "seed")
        if args.starts and args.starts > 1:
            sols = gd.solve_many(problem, range(seed, seed + args.starts), certify=certify,
                                 gap_tol=gap_tol, **options)
            solution, starts = best_start(sols)
            return replace(solution, starts=starts), _certificate_work(sols)
        solution = gd.solve(problem, seed=seed, certify=certify, gap_tol=gap_tol, **options)
        return solution, _certificate_work([solution])
    else:
        from solvers import convex

        if args.method == "convex":
            if problem.n > 100:
                print(f"ufm: note: the n x n program with n = {problem.n} may take minutes (about 50 s at n = 96 "
                      "on 2 cores); --method reduced solves full-batch problems in seconds", file=sys.stderr)
            solution = convex.solve_relaxation(problem, gap_tol=gap_tol)
        else:
            solution = convex.solve_reduced(problem, gap_tol=gap_tol)
        return solution, _certificate_work([solution])


def cmd_solve(args: argparse.Namespace) -> int:
    _check_solve_options(args)
    problem = problem_from_args(args)
    _check_solve(args, problem)
    if args.validate_only:
        return 0
    start_work(args, "solvers.gd" if args.method == "gd" else "solvers.convex", "theory_checks.report")
    from theory_checks.predictions import predict
    from theory_checks.report import solution_report

    from solvers.defaults import GAP_TOL

    certify = not args.no_certify
    gap_tol = args.gap_tol if args.gap_tol is not None else GAP_TOL
    with Ticker(_solve_label(args, problem), enabled=not args.no_progress):
        solution, certificate_seconds = _run_solve(args, problem, certify, gap_tol)
    args.clock.mark("solve")
    report = timed(args, solution_report(problem, solution, predict(problem)), "report",
                   {"certificate": certificate_seconds})
    code = 0 if solution.status in ("optimal", "converged") else 1
    hint = _way_out(args, problem, solution.status)
    if hint:
        report["hint"] = hint
    if args.json:
        print_json(report)
        return code
    _print_solution(report)
    if hint:
        print(f"ufm solve: {hint}", file=sys.stderr)
    return code


def _way_out(args: argparse.Namespace, problem: Problem, status: str) -> str:
    """What to try where gradient descent stopped at a point the certificate does not prove."""
    if args.method != "gd" or status != "stationary":
        return ""
    ways = [f"more starts (--starts {max(8, 2 * (args.starts or 1))})"]
    if problem.objective == SCL() and problem.dim < problem.n:
        ways.append(f"a larger --dim than {problem.dim} (a stall at rank d can vanish one rank up)")
    if problem.is_full_batch and problem.prototypes is None and problem.objective == SCL():
        ways.append("--method reduced, which the certificate proves from the class-level program")
    return "this point is stationary, not proved optimal; try " + ", or ".join(ways)


def cmd_predict(args: argparse.Namespace) -> int:
    from solvers import sizing

    problem = problem_from_args(args)
    _refuse_unused_seed(args, problem, "predict")
    sizing.require(sizing.reduced_bytes(problem) + sizing.problem_bytes(problem),
                   f"the prediction at k = {problem.k}, n = {problem.n}", "use fewer classes or examples")
    if args.validate_only:
        return 0
    start_work(args, "theory_checks.predictions")
    from theory_checks.predictions import predict

    prediction = timed(args, predict(problem).to_dict(), "predict")
    if args.json:
        print_json(prediction | {"problem": problem.describe()})
        return 0
    print(f"geometry: {prediction['geometry']}")
    print(f"loss:     {_fmt(prediction['loss'], 12)}")
    print(f"why:      {prediction['why']}")
    print(f"seconds:  {timings_line(prediction)}")
    if prediction["class_mean_gram"] is not None:
        print("class-mean Gram:")
        for row in prediction["class_mean_gram"]:
            print("  " + " ".join(f"{v:+.4f}" for v in row))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from theory_checks.catalogue import CATALOGUE
    from theory_checks.check import run_checks

    checks = CATALOGUE
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {c.name for c in CATALOGUE}
        if unknown:
            raise ProblemError(f"unknown check(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(c.name for c in CATALOGUE)}")
        checks = [c for c in CATALOGUE if c.name in wanted]
    if args.validate_only:
        return 0
    start_work(args, "solvers.gd", "solvers.convex", "theory_checks.predictions")
    results = run_checks(checks, quick=args.quick, progress=None if args.no_progress else progress)
    passed = all(r.passed for r in results)
    report = timed(args, {"checks": [r.to_dict() for r in results], "passed": passed, "quick": args.quick},
                   "checks")
    failure = _write_failure(lambda: write_text_atomically(args.save, json_text(report))) if args.save else None
    if failure:
        report["error"] = failure
    if args.json:
        print_json(report)
    else:
        rows = [(r.check.name, r.check.source, _fmt(r.measured, 3),
                 ("<= " if r.check.comparison == "at_most" else ">= ") + _fmt(r.check.tolerance, 3),
                 "pass" if r.passed else "FAIL", f"{r.seconds:.1f}", r.check.claim) for r in results]
        print_table(rows, ("check", "source", "measured", "tolerance", "result", "seconds", "claim"))
        for r in results:
            if not r.passed:
                print(f"\n{r.check.name} failed: {r.check.claim}")
                print(f"  measured: {r.check.measures} = {_fmt(r.measured, 4)}")
                if r.error:
                    print(f"  error: {r.error}")
        print(f"\n{sum(r.passed for r in results)}/{len(results)} checks passed in {timings_line(report)}")
        if args.save and not failure:
            print(f"report written to {args.save.resolve()}")
    if failure:
        print(f"{args.command_name}: error: {failure}", file=sys.stderr)
        return 1
    return 0 if passed else 1


def figure_target(args: argparse.Namespace, default_name: str) -> Path | None:
    """Where the figure goes: ``--out``; with ``--json`` and no ``--out``, nowhere (None: the numbers
    were asked for, and nothing is written behind the user's back); else ``default_name`` in the
    current directory (printed). Checked writable before any work."""
    if args.out is not None:
        return args.out
    if getattr(args, "json", False):
        return None
    try:
        return values.figure_path(default_name)
    except argparse.ArgumentTypeError as err:
        raise ProblemError(f"no --out given and the default figure {default_name}: {err}; pass --out PATH") from None


def _write_failure(write) -> str | None:
    """Call ``write()``: None, or the message where it failed (:class:`ufm.errors.OutputError`: the old
    file is unchanged), which the caller reports beside the numbers it still prints."""
    try:
        write()
    except OutputError as err:
        return str(err)
    return None


def _finish_figure(fig, data: dict, args: argparse.Namespace, path: Path | None, phase: str) -> None:
    """Save the figure (unless ``path`` is None: ``--json`` without ``--out``) and print the data
    (``--json``, with the call's ``seconds`` and ``timings``, ``phase`` the work just done) or where the
    figure went."""
    from ufm.app import plots

    failure = _write_failure(lambda: plots.save(fig, path)) if path is not None else None
    path = None if path is None or failure else path.resolve()
    data = timed(args, dict(data, figure=None if path is None else str(path)), phase)
    if failure:
        data["error"] = failure
    if args.json:
        print_json(data)                       # the numbers, even where the figure was not written
        if path is not None:
            print(f"figure written to {path}", file=sys.stderr)
    else:
        if path is not None:
            print(f"figure written to {path}")
        print(f"seconds: {timings_line(data)}")
    if failure:
        print(f"{args.command_name}: error: {failure}", file=sys.stderr)
        raise Exit(1)


def _relu_options(args: argparse.Namespace) -> tuple[bool, ...]:
    """The ReLU convention of every command: no ReLU by default, ``--relu`` for ReLU; the imbalance and
    temperature sweeps also take ``--compare-relu`` to draw both."""
    if getattr(args, "compare_relu", False):
        refuse(_given(args, "relu"), "with --compare-relu (which draws both)")
        return (False, True)
    return (bool(args.relu),)


def _sweep_points(args: argparse.Namespace):
    """``(problems, run)``: every point's problem, validated, and the call that runs the sweep (which
    builds the same problems again: cheap, and the sweep functions stay usable on their own)."""
    from theory_checks import sweeps

    bar = None if args.no_progress else progress
    objective = _objective(args) if args.sweep != "batching" else SCL()
    if objective != SCL():
        refuse(_given(args, "check_gd"), f"to --loss {objective.name} (every point is a certified gradient-descent "
               "solve already)")
    if args.sweep == "imbalance":
        imbalance = args.imbalance or "step"
        if imbalance != "step":
            refuse(_given(args, "minority_fraction"), f"to --imbalance {imbalance} (only step has minority classes)")
        if not uses_tau(objective):
            refuse(_given(args, "tau"), f"to {objective.describe()} (it has no temperature)")
        options = dict(profile=imbalance, k=args.classes or 4, n_max=args.n_max or 32,
                       minority_fraction=args.minority_fraction or 0.5,
                       tau=args.tau or 0.5 if uses_tau(objective) else None,
                       relu_options=_relu_options(args), objective=objective)
        _, problems = sweeps.imbalance_problems(args.ratios, **options)
        return problems, lambda: sweeps.sweep_imbalance(args.ratios, check_gd=args.check_gd,
                                                        progress=bar, **options)
    if args.sweep == "temperature":
        counts = list(args.counts or (20, 20, 4, 4))
        relu_options = _relu_options(args)
        _, problems = sweeps.temperature_problems(args.taus, counts, relu_options=relu_options, objective=objective)
        return problems, lambda: sweeps.sweep_temperature(args.taus, counts, relu_options=relu_options,
                                                          check_gd=args.check_gd, progress=bar, objective=objective)
    counts = list(args.counts or (8, 8, 4, 4))
    schemes = args.schemes or (["fixed-random", "random", "binding"] if args.relu else ["fixed-random"])
    options = dict(tau=args.tau or 0.5, schemes=schemes, relu=bool(args.relu), seed=args.seed or 0)
    _, problems = sweeps.batching_problems(args.batch_sizes, counts, **options)
    return problems, lambda: sweeps.sweep_batching(args.batch_sizes, counts, progress=bar, **options)


def cmd_sweep(args: argparse.Namespace) -> int:
    from solvers import sizing
    from solvers.defaults import DEFAULT_STEPS

    problems, run = _sweep_points(args)
    path = figure_target(args, f"ufm-sweep-{args.sweep}.png")
    for problem in problems:
        check_gd = getattr(args, "check_gd", False)
        if args.sweep == "batching" or check_gd:
            sizing.require(sizing.gd_bytes(problem, DEFAULT_STEPS, starts=4 if check_gd else 1),
                           f"gradient descent on n = {problem.n}", "use smaller counts")
        if problem.objective != SCL():
            sizing.require(sizing.gd_bytes(problem, DEFAULT_STEPS), f"gradient descent on n = {problem.n}",
                           "use smaller counts")
            continue
        sizing.require(sizing.reduced_bytes(problem), f"the reduced program at k = {problem.k}, n = {problem.n}",
                       "use fewer classes or examples")
    if args.validate_only:
        return 0
    start_work(args, "solvers.gd", "solvers.convex", "ufm.app.plots")
    from theory_checks.sweeps import nonfinite_points
    from ufm.app import plots

    result = run()
    args.clock.mark("sweep")
    fig = plots.sweep_result_figure(result)
    if not args.json:
        _print_sweep(result)
    _finish_figure(fig, result.to_dict(), args, path, "report")
    failed = _status_points(result, lambda status: status in FAILED) + nonfinite_points(result)
    if failed:
        hint = ""
        if args.sweep == "batching" and not args.relu and any(s != "fixed-random" for s in result.series):
            hint = (" (reshuffled batches change the loss every epoch; without ReLU they share no minimiser, so "
                    "gradient descent runs to its epoch budget: see --relu, or the fixed-random scheme)")
        print(f"ufm sweep {args.sweep}: {len(failed)} point(s) not proved: " + "; ".join(failed) + hint,
              file=sys.stderr)
        return 1
    return 0


#: Solver statuses that make a command exit 1: a failure, or a result the certificate does not prove.
FAILED = ("error", "not_converged", "stationary", "optimal_inaccurate")
#: How a tally of starts names each status.
STATUS_WORDS = {"optimal": "certified optimal"}


def cmd_landscape(args: argparse.Namespace) -> int:
    from solvers import sizing
    from solvers.defaults import DEFAULT_STEPS
    from solvers.sizing import MAX_HESSIAN_SIZE

    problem = problem_from_args(args)
    path = figure_target(args, "ufm-landscape.png")
    size = problem.n * problem.dim
    _check_seed_range(_option(args, "seed"), args.starts)
    if args.directions == "hessian" and size > MAX_HESSIAN_SIZE:
        raise ProblemError(f"--directions hessian needs the dense Hessian, (n d)^2 entries, and n d = {size} "
                           f"exceeds {MAX_HESSIAN_SIZE}; use --directions random")
    need = sizing.gd_bytes(problem, DEFAULT_STEPS, starts=args.starts, lanes=_lanes(problem, args.starts)) \
        + sizing.slice_bytes(problem, args.resolution)
    if size <= MAX_HESSIAN_SIZE:
        need += sizing.hessian_bytes(problem)
    sizing.require(need, f"the landscape of n = {problem.n} with {args.starts} starts and a "
                         f"{args.resolution} x {args.resolution} slice", "use fewer starts, a lower --resolution "
                                                                          "or fewer examples")
    if not (problem.is_full_batch and problem.prototypes is None):
        sizing.require_relaxation(problem)     # the landscape's reference optimum
    if args.validate_only:
        return 0
    start_work(args, "theory_checks.landscape", "solvers.convex", "ufm.app.plots")
    from theory_checks.landscape import LANDSCAPE_STAGES, landscape_data
    from ufm.app import plots
    from ufm.app.progress import Stages

    with Stages(list(LANDSCAPE_STAGES), "landscape", enabled=not args.no_progress) as stage:
        data = landscape_data(problem, starts=args.starts, slice_directions=args.directions,
                              resolution=args.resolution, radius=args.radius, on_stage=stage)
    args.clock.mark("landscape")
    fig = plots.landscape_figure(data, title=plots.problem_title(counts=problem.counts, tau=problem.tau,
                                                                 relu=problem.relu, dim=problem.dim))
    tally = ", ".join(f"{data['statuses'].count(s)} {STATUS_WORDS.get(s, s)}"
                      for s in dict.fromkeys(["optimal", "stationary", *data["statuses"]]))
    if not args.json:
        print(f"{args.starts} starts: {tally}; largest relative gap to the convex optimum "
              f"{max(data['gaps']):.3g}; largest Procrustes residual {data['max_procrustes_residual']:.3g}")
    _finish_figure(fig, data, args, path, "report")
    if not np.isfinite(data["gaps"]).all():
        print(f"ufm landscape: the convex optimum is not certified ({data['optimum_status']}), so the gaps "
              "are unknown", file=sys.stderr)
        return 1
    if data["optimal"] == 0:
        hint = (" (reshuffled batches without ReLU share no minimiser: gradient descent runs to its epoch "
                "budget; see --relu)" if problem.batching.scheme in ("random", "balanced") and not problem.relu
                else " (more --starts, or a larger --dim)")
        print(f"ufm landscape: no start was proved optimal ({tally}){hint}", file=sys.stderr)
        return 1
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from ufm.app.explore_state import SLIDER_RANGES, ExplorerState

    state = ExplorerState()
    for name, attr in (("ratio", "ratio"), ("classes", "k"), ("tau", "tau")):
        value = getattr(args, name)
        if value is None:
            continue
        lo, hi = SLIDER_RANGES[attr]
        if not lo <= value <= hi:
            raise ProblemError(f"--{name} {value:g} is outside the explorer's slider range [{lo:g}, {hi:g}]")
        if attr == "k" and value != int(value):
            raise ProblemError(f"--classes {value!r} must be a whole number")
        setattr(state, attr, int(value) if attr == "k" else value)
    state.relu = bool(args.relu)
    if args.out is None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")):
            raise ProblemError("no display for the explorer window; run it on a desktop, or save a snapshot "
                               "with --out FILE.png")
    if args.validate_only:
        return 0
    start_work(args, "matplotlib")
    import matplotlib

    if args.out is not None:
        matplotlib.use("Agg")
    from ufm.app.explore import Explorer, main as explore_main

    if args.out is not None:  # headless: draw the starting state and save it, without the widgets
        explorer = Explorer(state)
        print(f"snapshot written to {explorer.snapshot(args.out).resolve()}")
        return 0
    if matplotlib.get_backend().lower() == "agg":
        raise ProblemError("no display for the explorer window (matplotlib backend Agg); run it on a desktop, "
                           "or save a snapshot with --out FILE.png")
    explore_main(state)
    return 0


# ---------------------------------------------------------------- the parser
def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="compile every program afresh and keep none (default: compiled programs are kept "
                             "in $UFM_CACHE_DIR, else ~/.cache/ufm-scl, and loaded by later calls; "
                             "UFM_NO_CACHE=1 does the same as this option)")


def _output_options(parser: argparse.ArgumentParser, figure: bool = False) -> None:
    if figure:
        parser.add_argument("--out", type=values.figure_path,
                            help="figure file (.png, .pdf, .svg by extension; default ufm-landscape.png or "
                                 "ufm-sweep-<kind>.png in the current directory, path printed; with --json "
                                 "and no --out, no figure is written)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    from ufm import __version__

    parser = Parser(prog="ufm", description="The unconstrained features model with the supervised contrastive "
                                            "loss. Exit codes: 0 success, 1 solver failure or unproved result, "
                                            "2 bad input.")
    parser.add_argument("--version", action="version", version=f"ufm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    batches = sub.add_parser("batches", help="inspect a batching")
    batches_sub = batches.add_subparsers(dest="batches_command", required=True, parser_class=Parser)
    check = batches_sub.add_parser(
        "check", help="whether the batching guarantees NC and the orthogonal frame under ReLU")
    add_problem_options(check)
    _output_options(check)
    _cache_option(check)
    check.set_defaults(handler=cmd_batches_check)

    solve = sub.add_parser("solve", help="solve a problem and compare with the prediction")
    add_problem_options(solve, objective=True)
    solve.add_argument("--method", choices=("gd", "convex", "reduced"), default="gd",
                       help="gradient descent (default), the n x n convex program, or the reduced k x k program")
    solve.add_argument("--steps", type=values.integer(1, 10 ** 7), help="gradient descent: at most this many "
                                                                       "epochs (default 5000)")
    solve.add_argument("--lr", type=values.real(0, 1e6, lo_open=True),
                       help="gradient descent: first trial step (default 0.1)")
    solve.add_argument("--tol", type=values.real(0, 1, lo_open=True, hi_open=True),
                       help="gradient descent: stopping tolerance (default 1e-12 in float64, 1e-8 in float32)")
    solve.add_argument("--float32", action="store_true", help="gradient descent in float32 (speed option)")
    solve.add_argument("--chunk-size", type=values.integer(1),
                       help="gradient descent: evaluate the loss in row blocks of C anchors (memory ~ C n "
                            "instead of n^2), for large full batches")
    solve.add_argument("--starts", type=values.integer(1, 1000),
                       help="gradient descent: S random starts (seeds seed..seed+S-1) in one call, the best "
                            "certified kept (useful with ReLU at d < 2k, or after a stationary result)")
    solve.add_argument("--no-certify", action="store_true",
                       help="gradient descent: skip the certificate (status 'converged' instead of "
                            "'optimal' / 'stationary')")
    solve.add_argument("--gap-tol", type=values.real(0, 1, lo_open=True, hi_open=True),
                       help="largest relative gap on the excess that counts as optimal (default 1e-6)")
    solve.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    _output_options(solve)
    _cache_option(solve)
    solve.set_defaults(handler=cmd_solve)

    pred = sub.add_parser("predict", help="what the theory predicts for a problem")
    add_problem_options(pred, objective=True)
    _output_options(pred)
    _cache_option(pred)
    pred.set_defaults(handler=cmd_predict)

    verify = sub.add_parser("verify", help="run the theorem catalogue")
    verify.add_argument("--quick", action="store_true", help="fewer, smaller instances")
    verify.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
    verify.add_argument("--save", metavar="FILE.json", type=values.json_path,
                        help="also write the JSON report to FILE.json")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _output_options(verify)
    _cache_option(verify)
    verify.set_defaults(handler=cmd_verify)

    sweep = sub.add_parser("sweep", help="optimal geometry against imbalance, temperature or batching")
    sweep_sub = sweep.add_subparsers(dest="sweep", required=True, parser_class=Parser)
    imb = sweep_sub.add_parser("imbalance", help="against the imbalance ratio R (reduced program)")
    imb.add_argument("--ratios", type=values.reals(1, 1e12), default=[1.0, 2.0, 4.0, 8.0, 16.0],
                     help="list 1,2,4 or range start:stop:count; n_max / R must be a whole number "
                          "(default 1,2,4,8,16)")
    imb.add_argument("--imbalance", choices=("step", "long-tail"), help="count profile (default step)")
    imb.add_argument("--classes", type=CLASSES, help="number of classes K (default 4)")
    imb.add_argument("--n-max", type=N_MAX, help="examples in the largest class (default 32)")
    imb.add_argument("--minority-fraction", type=FRACTION, help="with step: fraction of minority classes "
                                                               "(default 0.5)")
    imb.add_argument("--tau", type=TAU, help="temperature (default 0.5)")
    temp = sweep_sub.add_parser("temperature", help="against the temperature (reduced program)")
    temp.add_argument("--taus", type=values.reals(TAU_MIN, TAU_MAX),
                      default=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                      help="list or range start:stop:count (default 0.01,0.02,0.05,0.1,0.2,0.5,1,2: down to "
                           "the small-tau limit, where the geometry tends to the simplex ETF)")
    temp.add_argument("--counts", type=values.counts, help="class counts (default 20,20,4,4)")
    for p in (imb, temp):
        p.add_argument("--relu", action="store_true", help="ReLU only (default: no ReLU only)")
        p.add_argument("--compare-relu", action="store_true", help="both, side by side")
        p.add_argument("--check-gd", action="store_true", help="cross-check each point with vmapped GD")
        add_objective_options(p.add_argument_group("objective"))
    bat = sweep_sub.add_parser("batching", help="against the batch size per scheme (gradient descent)")
    bat.add_argument("--batch-sizes", type=values.integers(2, 10 ** 6), default=[6, 8, 12, 16],
                     help="list of batch sizes (default 6,8,12,16)")
    bat.add_argument("--counts", type=values.counts, help="class counts (default 8,8,4,4)")
    bat.add_argument("--schemes", type=values.names(("fixed-random", "random", "balanced", "binding")),
                     help="comma-separated: fixed-random (one partition, every epoch), random, balanced, "
                          "binding (default fixed-random,random,binding with --relu; fixed-random without, "
                          "since reshuffled batches share no minimiser without ReLU and gradient descent "
                          "cannot converge)")
    bat.add_argument("--tau", type=TAU, help="temperature (default 0.5)")
    bat.add_argument("--relu", action="store_true", help="nonnegative embeddings (the orthogonal frame of "
                                                         "docs/theory.md section 4; default off)")
    bat.add_argument("--seed", type=SEED, help="seed of the batches and starts (default 0)")
    for p in (imb, temp, bat):
        _output_options(p, figure=True)
        _cache_option(p)
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        p.set_defaults(handler=cmd_sweep)

    land = sub.add_parser("landscape", help="random starts, a loss slice, Hessian spectra, convergence")
    add_problem_options(land)
    land.add_argument("--starts", type=values.integer(1, 1000), default=20, help="random starts (default 20)")
    land.add_argument("--directions", choices=("random", "hessian"), default="random",
                      help="slice directions (default random)")
    land.add_argument("--resolution", type=values.integer(3, 201), default=31,
                      help="slice grid points per axis (default 31)")
    land.add_argument("--radius", type=values.real(0, 100, lo_open=True), default=1.0,
                      help="slice half-width before the retraction (default 1)")
    _output_options(land, figure=True)
    _cache_option(land)
    land.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    land.set_defaults(handler=cmd_landscape)

    explore = sub.add_parser("explore", help="the interactive explorer window")
    explore.add_argument("--out", type=values.figure_path,
                         help="save a snapshot of the starting state instead of opening a window")
    explore.add_argument("--ratio", type=values.real(), help="starting imbalance ratio (default 4)")
    explore.add_argument("--classes", type=values.integer(), help="starting number of classes (default 4)")
    explore.add_argument("--tau", type=values.real(), help="starting temperature (default 0.5)")
    explore.add_argument("--relu", action="store_true", help="start with ReLU on")
    _cache_option(explore)
    explore.set_defaults(handler=cmd_explore)
    return parser


def run() -> None:
    """The ``ufm`` console command: :func:`main` on ``sys.argv``, then exit. Once JAX is loaded the exit
    skips the interpreter's teardown (``os._exit`` after flushing the output): destroying JAX's and
    XLA's objects took 0.2 s of every call here, all of it after the answer was out."""
    code = main(from_process_start=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if "jax" in sys.modules:
        os._exit(code)
    sys.exit(code)


#: A value that starts with a minus sign and a digit (``-3,3``, ``-1:1:3``, ``-0.5``): no option does.
_NEGATIVE_VALUE = re.compile(r"-[0-9.]")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--counts -3,3`` as ``--counts=-3,3``: argparse reads a token that starts with '-' and is not a
    plain negative number as an option, and would answer "expected one argument" instead of checking
    the value."""
    out: list[str] = []
    for token in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE_VALUE.match(token)):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _command_name(argv: Sequence[str]) -> str:
    """``ufm solve``, ``ufm sweep imbalance``: the command an error line names."""
    return f"ufm {' '.join(a for a in argv[:2] if not a.startswith('-'))}".strip()


def main(argv: Sequence[str] | None = None, *, validate_only: bool = False,
         from_process_start: bool = False) -> int:
    """Run the ``ufm`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit code.

    ``validate_only``: check everything (values, combinations, memory, output paths) and return 0
    without computing: the same checks a real run makes first. ``from_process_start``: this call is
    the whole process (the console command), so ``seconds`` counts from the program's start; otherwise
    from this call.
    """
    argv = _attach_negative_values(list(sys.argv[1:] if argv is None else argv))
    as_json = "--json" in argv
    clock = CallClock(from_process_start)
    command = _command_name(argv)
    signals.CALL.update(command=command, json=as_json, clock=clock)
    _show_warning.cache_said = False
    try:
        _refuse_repeats(argv)
        args = build_parser().parse_args(argv)
        args.validate_only, args.clock, args.command_name = validate_only, clock, command
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args) or 0)
    except ProblemError as err:
        return _fail(f"{command}: error: {err}", 2, as_json)
    except Exit as done:              # the output is out; only the exit code is left
        return done.code
    except SystemExit as done:        # --help, --version
        return int(done.code or 0) if isinstance(done.code, (int, type(None))) else 2
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:    # a file that could not be written after all (the checks found it writable)
        return _fail(f"ufm: error: {err}", 1, as_json)
    except MemoryError:
        return _fail("ufm: error: ran out of memory although the size estimate fit; retry with fewer examples "
                     "or --chunk-size", 1, as_json)
    except Exception as err:  # a bug: one line, the traceback on request
        if os.environ.get("UFM_TRACEBACK"):
            raise
        return _fail(f"ufm: internal error: {type(err).__name__}: {err} (a bug; please report it with the "
                     "command line; UFM_TRACEBACK=1 shows the traceback)", 1, as_json)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (``ufm: warning: ...``); the compile cache's warnings (ours, and
    JAX's about its persistent cache entries) once per call, since one cause repeats per program."""
    text = " ".join(str(message).split())
    cache = "compile cache" in text or "persistent compilation cache" in text
    if cache:
        if getattr(_show_warning, "cache_said", False):
            return
        _show_warning.cache_said = True
    print(f"ufm: warning: {text}", file=sys.stderr)


#: Options that may be given more than once (they accumulate).
REPEATABLE = ("--only",)


def _refuse_repeats(argv: list[str]) -> None:
    """An option given twice is an error (argparse would keep the last one silently)."""
    seen = set()
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name.startswith("--") and name not in REPEATABLE:
            if name in seen:
                raise UsageError(f"{name} is given twice; give it once")
            seen.add(name)


def _fail(message: str, code: int, as_json: bool) -> int:
    message = " ".join(message.split())     # one line, whatever the exception held
    print(message, file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code}))
    return code
