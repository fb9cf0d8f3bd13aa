"""The ``ufm`` command (the contract is ../shared/CLI.md): argument parsing and output only.

Bad input ends with a one-line ``ufm: error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from ufm.batching import Batching, check_conditions
from ufm.errors import ProblemError
from ufm.problem import Problem, Prototypes


# ---------------------------------------------------------------- problem options (shared)
def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """The options of CLI.md "Describing a problem"."""
    g = parser.add_argument_group("problem")
    g.add_argument("--counts", help="class counts, e.g. 8,8,2,2 (overrides --classes/--imbalance)")
    g.add_argument("--classes", type=int, default=4, help="number of classes K (default 4)")
    g.add_argument("--imbalance", choices=("balanced", "step", "long-tail"), default="balanced")
    g.add_argument("--n-max", type=int, default=10, help="examples in the largest class (default 10)")
    g.add_argument("--ratio", type=float, default=1.0, help="imbalance ratio R >= 1 (default 1)")
    g.add_argument("--minority-fraction", type=float, default=0.5,
                   help="fraction of minority classes under STEP (default 0.5)")
    g.add_argument("--tau", type=float, default=1.0, help="temperature > 0 (default 1.0)")
    g.add_argument("--relu", action="store_true", help="nonnegative embeddings (ReLU)")
    g.add_argument("--dim", type=int, default=None, help="embedding dimension (default k; 2k with --relu)")
    g.add_argument("--batching", choices=("full", "random", "balanced", "binding"), default="full")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--batches-file", help="JSON list of lists of example indices")
    g.add_argument("--prototypes", choices=("none", "etf", "of"), default="none")
    g.add_argument("--prototypes-per-class", type=int, default=1)
    g.add_argument("--prototype-anchors", choices=("yes", "no"), default="yes",
                   help="whether prototypes are anchors too ((P-b), default) or not ((P-a))")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")


def _parse_counts(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProblemError(f"--counts {text!r} must be comma-separated whole numbers, e.g. 8,8,2,2") from None
    return values  # Problem.from_counts rejects non-integers with its own message


def problem_from_args(args: argparse.Namespace) -> Problem:
    """Build (and so validate) the Problem that the options describe."""
    if args.batches_file:
        batching = Batching.from_file(args.batches_file)
    elif args.batching == "full":
        batching = Batching.full()
    else:
        if args.batch_size is None:
            raise ProblemError(f"--batching {args.batching} needs --batch-size B")
        batching = Batching(args.batching, batch_size=args.batch_size)
    prototypes = None
    if args.prototypes != "none":
        prototypes = Prototypes(args.prototypes, args.prototypes_per_class, args.prototype_anchors == "yes")
    options = dict(tau=args.tau, relu=args.relu, dim=args.dim, batching=batching,
                   prototypes=prototypes, seed=args.seed)
    if args.counts:
        return Problem.from_counts(_parse_counts(args.counts), **options)
    if args.imbalance == "balanced":
        return Problem.balanced(args.classes, args.n_max, **options)
    if args.imbalance == "step":
        return Problem.step(args.classes, args.n_max, args.ratio, args.minority_fraction, **options)
    return Problem.long_tail(args.classes, args.n_max, args.ratio, **options)


# ---------------------------------------------------------------- output helpers
def to_jsonable(value):
    """Convert NumPy / JAX values inside dicts and lists to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def print_json(obj) -> None:
    print(json.dumps(to_jsonable(obj), indent=2))


def print_table(rows: Sequence[Sequence], header: Sequence[str]) -> None:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


# ---------------------------------------------------------------- commands
def cmd_batches_check(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    _, proto_labels = problem.prototype_rows()
    batches = problem.batches(epoch=0)
    result = check_conditions(problem.labels, batches, proto_labels).to_dict()
    result.update(problem=problem.describe(), n_batches=len(batches))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ufm", description="The unconstrained features model with the supervised contrastive loss.")
    sub = parser.add_subparsers(dest="command", required=True)

    batches = sub.add_parser("batches", help="inspect a batching")
    batches_sub = batches.add_subparsers(dest="batches_command", required=True)
    check = batches_sub.add_parser(
        "check", help="whether the batching guarantees NC and the orthogonal frame under ReLU")
    add_problem_options(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=cmd_batches_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ProblemError as err:
        print(f"ufm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        return 130
