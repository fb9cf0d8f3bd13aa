"""The options that describe a problem (docs/cli.md "Describing a problem"), shared by ``solve``,
``predict``, ``sweep``, ``landscape`` and ``batches``, and the Problem they build. Every domain rule is
the model's (:class:`ufm.problem.Problem`, :mod:`ufm.objectives`, :mod:`solvers.sizing`); here options
that do not apply to what the others describe are refused, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

from ufm.app import cli_values as values
from ufm.app.parsing import UsageError
from ufm.batching import Batching
from ufm.errors import ProblemError
from ufm.objectives import OBJECTIVES, ObjectiveOptions
from ufm.problem import (
    IMBALANCE_PROFILES,
    SEED_MAX,
    TAU_MAX,
    TAU_MIN,
    Problem,
    Prototypes,
    uses_tau,
)

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


def add_objective_options(g: argparse._ArgumentGroup) -> None:
    """--loss and each registered loss's own options (its options class's ``CLI_ARGUMENTS``; CE's
    --classifier and --weight-decay) (``solve``, ``predict`` and the imbalance and temperature sweeps)."""
    g.add_argument("--loss", choices=tuple(OBJECTIVES), help="objective: supervised contrastive (scl, the default), "
                   "cross-entropy (ce, docs/theory.md section 10), or another registered loss")
    for name in OBJECTIVES:
        for flag, spec in getattr(OBJECTIVES.options(name), "CLI_ARGUMENTS", {}).items():
            keywords = dict(spec)
            if "real" in keywords:
                keywords["type"] = values.real(*keywords.pop("real"))
            g.add_argument(flag, **keywords)


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


def given(args: argparse.Namespace, *names: str) -> list[str]:
    """The options among ``names`` (attribute names) that the user gave, as ``--option`` strings."""
    return ["--" + name.replace("_", "-") for name in names
            if getattr(args, name, None) is not None and getattr(args, name, None) is not False]


def option(args: argparse.Namespace, name: str) -> str | int | float:
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
        refuse(given(args, "classes", "imbalance", "n_max", "ratio", "minority_fraction"),
               "with --counts (the counts give every class)")
        least = OBJECTIVES.options(option(args, "loss")).min_class_size
        single = [c for c in args.counts if c < least]
        if single:
            raise UsageError(f"argument --counts: a class with {single[0]} example(s) has no positive pair; every "
                             f"count must be at least {least} (got {','.join(map(str, args.counts))}) "
                             f"(see {args.command_name} --help)")
        return list(args.counts)
    imbalance = option(args, "imbalance")
    if imbalance == "balanced":
        refuse(given(args, "ratio", "minority_fraction"), "to balanced classes (use --imbalance step or long-tail)")
    else:
        if args.ratio is None:
            raise ProblemError(f"--imbalance {imbalance} needs --ratio R (R = n_max / n_min >= 1)")
        if imbalance == "long-tail":
            refuse(given(args, "minority_fraction"), "to --imbalance long-tail (only step has minority classes)")
    from ufm.problem import profile_counts
    return profile_counts(imbalance, option(args, "classes"), option(args, "n_max"), option(args, "ratio"),
                          args.minority_fraction)


def _batching(args: argparse.Namespace) -> Batching:
    if getattr(args, "batches_file", None) is not None:
        refuse(given(args, "batching", "batch_size"), "with --batches-file (the file gives the batches)")
        from solvers import sizing

        path = Path(args.batches_file)
        size = path.stat().st_size if path.is_file() else 0
        sizing.require(size * PARSE_BYTES_PER_BYTE, f"reading the batches file {path} ({size / 2 ** 20:.1f} MiB)",
                       "write fewer, larger batches, or use a batching scheme (--batching)")
        return Batching.from_file(path, max_batches=MAX_BATCHES)
    scheme = option(args, "batching")
    if scheme == "full":
        refuse(given(args, "batch_size"), "to full batching (use --batching random, balanced or binding)")
        return Batching.full()
    if args.batch_size is None:
        raise ProblemError(f"--batching {scheme} needs --batch-size B")
    return Batching(scheme, batch_size=args.batch_size)


def _prototypes(args: argparse.Namespace) -> Prototypes | None:
    kind = option(args, "prototypes")
    if kind == "none":
        refuse(given(args, "prototypes_per_class", "prototype_anchors"), "without --prototypes etf|of")
        return None
    return Prototypes(kind, option(args, "prototypes_per_class"), option(args, "prototype_anchors") == "yes")


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
    objective = objective_from_args(args)
    if not uses_tau(objective):
        refuse(given(args, "tau"), f"to {objective.describe()} (it has no temperature)")
    return Problem.from_counts(counts, tau=option(args, "tau") if uses_tau(objective) else None, relu=args.relu,
                               dim=args.dim,
                               batching=batching, prototypes=prototypes, seed=option(args, "seed"),
                               objective=objective)


def objective_flags() -> tuple[str, ...]:
    """The command's options that belong to one objective: every registered options class's
    ``CLI_FLAGS`` (the other objectives refuse them)."""
    return tuple(dict.fromkeys(f for name in OBJECTIVES for f in getattr(OBJECTIVES.options(name), "CLI_FLAGS", ())))


def objective_from_args(args: argparse.Namespace) -> ObjectiveOptions:
    """The options of the registered loss that --loss names, built from the flags its options class
    lists (``CLI_FLAGS``, ``from_cli``); the other objectives' flags are refused."""
    name = option(args, "loss")
    options = OBJECTIVES.options(name)
    own = tuple(getattr(options, "CLI_FLAGS", ()))
    refuse(given(args, *(f for f in objective_flags() if f not in own)), f"to --loss {name}")
    if not options.batched:
        refuse(given(args, "batching", "batch_size", "batches_file", "prototypes"),
               f"to --loss {name} (a sum over examples: full batch, no prototypes)")
    build = getattr(options, "from_cli", None)
    return build({f: getattr(args, f, None) for f in own}) if build is not None else options()


def check_seed_range(seed: int, starts: int) -> None:
    """Starts use the seeds seed, seed + 1, ...: the last must be a valid seed."""
    if seed + starts - 1 > SEED_MAX:
        raise ProblemError(f"--starts {starts} from --seed {seed} runs past the largest seed {SEED_MAX}; "
                           "lower one of them")


def refuse_unused_seed(args: argparse.Namespace, problem: Problem, command: str) -> None:
    """``--seed`` where nothing is random (no reshuffled batching) changes nothing: an error."""
    if not problem.batching.is_random:
        refuse(given(args, "seed"), f"to {command} with a {problem.batching.scheme} batching (nothing is random)")


def relu_settings(args: argparse.Namespace) -> tuple[bool, ...]:
    """The ReLU convention of every command: no ReLU by default, ``--relu`` for ReLU; the imbalance and
    temperature sweeps also take ``--compare-relu`` to draw both."""
    if getattr(args, "compare_relu", False):
        refuse(given(args, "relu"), "with --compare-relu (which draws both)")
        return (False, True)
    return (bool(args.relu),)
