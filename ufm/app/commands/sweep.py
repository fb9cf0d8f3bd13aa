"""``ufm sweep imbalance | temperature | batching``: the optimal geometry along one parameter."""

from __future__ import annotations

import argparse
import sys

from ufm.app import cli_values as values
from ufm.app.options import (CLASSES, FRACTION, N_MAX, SEED, TAU, add_objective_options, given, objective_from_args,
                             refuse, relu_settings)
from ufm.app.progress import progress, recorded
from ufm.app.render import _status_points, figure_target, finish_figure, print_sweep
from ufm.app.running import FAILED, start_work
from ufm.problem import DEFAULT_OBJECTIVE, TAU_MAX, TAU_MIN, uses_tau
from ufm.app.parsing import Parser, cache_option, output_options


def _sweep_points(args: argparse.Namespace):
    """``(problems, run)``: every point's problem, validated, and the call that runs the sweep (which
    builds the same problems again: cheap, and the sweep functions stay usable on their own)."""
    from theory_checks import sweeps

    bar = recorded(None if args.no_progress else progress)
    objective = objective_from_args(args) if args.sweep != "batching" else DEFAULT_OBJECTIVE
    if not sweeps.by_reduced_program(objective):
        refuse(given(args, "check_gd"), f"to --loss {objective.name} (every point is a certified gradient-descent "
               "solve already)")
    if args.sweep == "imbalance":
        imbalance = args.imbalance or "step"
        if imbalance != "step":
            refuse(given(args, "minority_fraction"), f"to --imbalance {imbalance} (only step has minority classes)")
        if not uses_tau(objective):
            refuse(given(args, "tau"), f"to {objective.describe()} (it has no temperature)")
        options = dict(profile=imbalance, k=args.classes or 4, n_max=args.n_max or 32,
                       minority_fraction=args.minority_fraction or 0.5,
                       tau=args.tau or 0.5 if uses_tau(objective) else None,
                       relu_options=relu_settings(args), objective=objective)
        _, problems = sweeps.imbalance_problems(args.ratios, **options)
        return problems, lambda: sweeps.sweep_imbalance(args.ratios, check_gd=args.check_gd,
                                                        progress=bar, **options)
    if args.sweep == "temperature":
        counts = list(args.counts or (20, 20, 4, 4))
        relu_options = relu_settings(args)
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

    from theory_checks.sweeps import by_reduced_program

    problems, run = _sweep_points(args)
    path = figure_target(args, f"ufm-sweep-{args.sweep}.png")
    for problem in problems:
        check_gd = getattr(args, "check_gd", False)
        if args.sweep == "batching" or check_gd:
            sizing.require(sizing.gd_bytes(problem, DEFAULT_STEPS, starts=4 if check_gd else 1),
                           f"gradient descent on n = {problem.n}", "use smaller counts")
        if not by_reduced_program(problem.objective):
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
        print_sweep(result)
    finish_figure(fig, result.to_dict(), args, path, "report")
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


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``sweep`` subcommand and its options."""
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
        output_options(p, figure=True)
        cache_option(p)
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        p.set_defaults(handler=cmd_sweep)
