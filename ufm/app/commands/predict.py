"""``ufm predict``: what the theory predicts for a problem."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ufm.app.options import add_problem_options, problem_from_args, refuse_unused_seed
from ufm.app.render import fmt, print_json
from ufm.app.running import start_work, timed, timings_line
from ufm.app.parsing import cache_option, output_options

if TYPE_CHECKING:
    from ufm.app.parsing import Parser


def cmd_predict(args: argparse.Namespace) -> int:
    from solvers import sizing

    problem = problem_from_args(args)
    refuse_unused_seed(args, problem, "predict")
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
    print(f"loss:     {fmt(prediction['loss'], 12)}")
    print(f"why:      {prediction['why']}")
    print(f"seconds:  {timings_line(prediction)}")
    if prediction["class_mean_gram"] is not None:
        print("class-mean Gram:")
        for row in prediction["class_mean_gram"]:
            print("  " + " ".join(f"{v:+.4f}" for v in row))
    return 0


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``predict`` subcommand and its options."""
    pred = sub.add_parser("predict", help="what the theory predicts for a problem")
    add_problem_options(pred, objective=True)
    output_options(pred)
    cache_option(pred)
    pred.set_defaults(handler=cmd_predict)
