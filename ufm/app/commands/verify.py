"""``ufm verify``: the theorem catalogue."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ufm.app import cli_values as values
from ufm.app.parsing import cache_option, output_options
from ufm.app.progress import progress, recorded
from ufm.app.render import fmt, json_text, print_json, print_table, write_failure
from ufm.app.running import start_work, timed, timings_line
from ufm.atomic import write_text_atomically
from ufm.errors import ProblemError

if TYPE_CHECKING:
    from ufm.app.parsing import Parser


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
    results = run_checks(checks, quick=args.quick, progress=recorded(None if args.no_progress else progress))
    passed = all(r.passed for r in results)
    report = timed(args, {"checks": [r.to_dict() for r in results], "passed": passed, "quick": args.quick},
                   "checks")
    failure = write_failure(lambda: write_text_atomically(args.save, json_text(report))) if args.save else None
    if failure:
        report["error"] = failure
    if args.json:
        print_json(report)
    else:
        rows = [(r.check.name, r.check.source, fmt(r.measured, 3),
                 ("<= " if r.check.comparison == "at_most" else ">= ") + fmt(r.check.tolerance, 3),
                 "pass" if r.passed else "FAIL", f"{r.seconds:.1f}", r.check.claim) for r in results]
        print_table(rows, ("check", "source", "measured", "tolerance", "result", "seconds", "claim"))
        for r in results:
            if not r.passed:
                print(f"\n{r.check.name} failed: {r.check.claim}")
                print(f"  measured: {r.check.measures} = {fmt(r.measured, 4)}")
                if r.error:
                    print(f"  error: {r.error}")
        print(f"\n{sum(r.passed for r in results)}/{len(results)} checks passed in {timings_line(report)}")
        if args.save and not failure:
            print(f"report written to {args.save.resolve()}")
    if failure:
        print(f"{args.command_name}: error: {failure}", file=sys.stderr)
        return 1
    return 0 if passed else 1


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``verify`` subcommand and its options."""
    verify = sub.add_parser("verify", help="run the theorem catalogue")
    verify.add_argument("--quick", action="store_true", help="fewer, smaller instances")
    verify.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
    verify.add_argument("--save", metavar="FILE.json", type=values.json_path,
                        help="also write the JSON report to FILE.json")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    output_options(verify)
    cache_option(verify)
    verify.set_defaults(handler=cmd_verify)
