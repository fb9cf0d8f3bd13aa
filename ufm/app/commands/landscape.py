"""``ufm landscape``: random starts, a loss slice, Hessian spectra, convergence."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import numpy as np

from ufm.app import cli_values as values
from ufm.app.commands.solve import _lanes
from ufm.app.options import add_problem_options, check_seed_range, option, problem_from_args
from ufm.app.render import figure_target, finish_figure
from ufm.app.running import STATUS_WORDS, start_work
from ufm.errors import ProblemError
from ufm.app.parsing import cache_option, output_options

if TYPE_CHECKING:
    from ufm.app.parsing import Parser


def cmd_landscape(args: argparse.Namespace) -> int:
    from solvers import sizing
    from solvers.defaults import DEFAULT_STEPS
    from solvers.sizing import MAX_HESSIAN_SIZE

    problem = problem_from_args(args)
    path = figure_target(args, "ufm-landscape.png")
    size = problem.n * problem.dim
    check_seed_range(option(args, "seed"), args.starts)
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
    finish_figure(fig, data, args, path, "report")
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


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``landscape`` subcommand and its options."""
    land = sub.add_parser("landscape", help="random starts, a loss slice, Hessian spectra, convergence")
    add_problem_options(land)
    land.add_argument("--starts", type=values.integer(1, 1000), default=20, help="random starts (default 20)")
    land.add_argument("--directions", choices=("random", "hessian"), default="random",
                      help="slice directions (default random)")
    land.add_argument("--resolution", type=values.integer(3, 201), default=31,
                      help="slice grid points per axis (default 31)")
    land.add_argument("--radius", type=values.real(0, 100, lo_open=True), default=1.0,
                      help="slice half-width before the retraction (default 1)")
    output_options(land, figure=True)
    cache_option(land)
    land.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    land.set_defaults(handler=cmd_landscape)
