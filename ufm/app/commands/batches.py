"""``ufm batches check``: whether a batching guarantees NC and the orthogonal frame under ReLU."""

from __future__ import annotations

import argparse

from ufm.app.options import add_problem_options, given, problem_from_args, refuse, refuse_unused_seed
from ufm.app.render import print_json
from ufm.app.running import start_work, timed
from ufm.batching import check_conditions
from ufm.app.parsing import Parser, cache_option, output_options


def cmd_batches_check(args: argparse.Namespace) -> int:
    from solvers import sizing

    refuse(given(args, "tau", "relu", "dim"), "to batches check (the conditions depend on the counts and "
                                               "the batches only)")
    problem = problem_from_args(args)
    refuse_unused_seed(args, problem, "batches check")
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


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``batches`` subcommand and its options."""
    batches = sub.add_parser("batches", help="inspect a batching")
    batches_sub = batches.add_subparsers(dest="batches_command", required=True, parser_class=Parser)
    check = batches_sub.add_parser(
        "check", help="whether the batching guarantees NC and the orthogonal frame under ReLU")
    add_problem_options(check)
    output_options(check)
    cache_option(check)
    check.set_defaults(handler=cmd_batches_check)
