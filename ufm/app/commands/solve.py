"""``ufm solve``: solve a problem by gradient descent, the n x n program or the reduced program, and
hold it against the prediction."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from ufm.app import cli_values as values
from ufm.app.options import (
    MAX_BATCHES,
    add_problem_options,
    check_seed_range,
    given,
    option,
    problem_from_args,
    refuse,
)
from ufm.app.progress import Ticker
from ufm.app.render import print_json, print_solution
from ufm.app.running import start_work, timed
from ufm.errors import ProblemError
from ufm.objectives import OBJECTIVES, Capability
from ufm.problem import (
    Problem,
)

GD_ONLY = ("steps", "lr", "tol", "starts", "float32", "no_certify", "chunk_size", "no_escape")
from ufm.app.parsing import cache_option, output_options

if TYPE_CHECKING:
    from ufm.app.parsing import Parser


def _lanes(problem: Problem, starts: int) -> int:
    """How many of ``starts`` starts gradient descent runs side by side (``solvers.sizing.default_lanes``),
    from the batch width alone (no batch is drawn)."""
    from solvers import sizing

    return sizing.default_lanes(problem, starts, width=sizing.batch_shape(problem)[1]) if starts > 1 else 1


#: The capabilities each method needs of the objective (gradient descent: every objective).
METHOD_NEEDS = {"convex": (Capability.RELAXATION, Capability.GRAM), "reduced": (Capability.REDUCED,)}


def _check_solve_options(args: argparse.Namespace) -> None:
    """The rules of ``solve`` that the options decide alone (checked before the problem is built: a
    reshuffled batching is validated on its drawn batches, which loads JAX)."""
    from solvers import defaults

    loss = option(args, "loss")
    declared = OBJECTIVES.capabilities(loss)
    needed = METHOD_NEEDS.get(args.method, ())
    if not all(c in declared for c in needed):
        raise ProblemError(f"--method {args.method} needs an objective with {' and '.join(c.value for c in needed)} "
                           f"(the {'n x n' if args.method == 'convex' else 'k x k'} program); --loss {loss} "
                           f"declares {', '.join(sorted(c.value for c in declared))}: use --method gd")
    if args.method != "gd":
        refuse(given(args, *GD_ONLY), f"to --method {args.method} (gradient descent options; the convex "
                                       "programs run in float64 and are always judged by their certificate)")
    if args.no_certify:
        refuse(given(args, "gap_tol"), "with --no-certify (no certificate, so no gap)")
        refuse(given(args, "no_escape"), "with --no-certify (the escape follows the certificate's eigenvector)")
    if Capability.BATCHED not in declared:
        refuse(given(args, "no_escape"), f"to --loss {loss} (the staircase escapes the batched driver's stalls)")
        refuse(given(args, "chunk_size"), f"to --loss {loss} (it evaluates the batched kernels' anchors in row "
                                          "blocks)")
    if args.starts is not None and args.seed is not None:
        check_seed_range(args.seed, args.starts)
    if args.method == "reduced":
        scheme = "explicit" if args.batches_file is not None else option(args, "batching")
        defaults.check_reduced_applies(scheme, option(args, "prototypes") != "none")


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
            refuse(given(args, "seed"), "to --method convex here (nothing is random: no reshuffled batching, "
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
        if args.no_escape:
            options["escape"] = False
        seed = option(args, "seed")
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
    from solvers.defaults import GAP_TOL
    from theory_checks.predictions import predict
    from theory_checks.report import solution_report

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
    print_solution(report)
    if hint:
        print(f"ufm solve: {hint}", file=sys.stderr)
    return code


def _way_out(args: argparse.Namespace, problem: Problem, status: str) -> str:
    """What to try where gradient descent stopped at a point the certificate does not prove."""
    if args.method != "gd" or status != "stationary":
        return ""
    from solvers.defaults import check_reduced_applies
    from ufm.objectives import Capability, has, objective_of

    objective = objective_of(problem)
    ways = [f"more starts (--starts {max(8, 2 * (args.starts or 1))})"]
    if getattr(args, "no_escape", False):
        ways.insert(0, "without --no-escape (the staircase escapes a stall one rank up, docs/theory.md 8a)")
    if has(objective, Capability.GRAM) and problem.dim < problem.n:
        ways.append(f"a larger --dim than {problem.dim} (a stall at rank d can vanish one rank up)")
    try:
        check_reduced_applies(problem.batching.scheme, problem.prototypes is not None)
        reduced = has(objective, Capability.REDUCED)
    except ProblemError:
        reduced = False
    if reduced:
        ways.append("--method reduced, which the certificate proves from the class-level program")
    return "this point is stationary, not proved optimal; try " + ", or ".join(ways)


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``solve`` subcommand and its options."""
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
    solve.add_argument("--no-escape", action="store_true",
                       help="gradient descent: keep the plain descent where the certificate does not prove the "
                            "point (by default the staircase escapes the stall one rank up, docs/theory.md 8a)")
    solve.add_argument("--gap-tol", type=values.real(0, 1, lo_open=True, hi_open=True),
                       help="largest relative gap on the excess that counts as optimal (default 1e-6)")
    solve.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    output_options(solve)
    cache_option(solve)
    solve.set_defaults(handler=cmd_solve)
