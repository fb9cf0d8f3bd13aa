"""``ufm explore``: the interactive explorer window (or a snapshot of it)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ufm.app import cli_values as values
from ufm.app.running import start_work
from ufm.errors import ProblemError
from ufm.app.parsing import cache_option

if TYPE_CHECKING:
    from ufm.app.parsing import Parser


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
    from ufm.app.explore import Explorer
    from ufm.app.explore import main as explore_main

    if args.out is not None:  # headless: draw the starting state and save it, without the widgets
        explorer = Explorer(state)
        print(f"snapshot written to {explorer.snapshot(args.out).resolve()}")
        return 0
    if matplotlib.get_backend().lower() == "agg":
        raise ProblemError("no display for the explorer window (matplotlib backend Agg); run it on a desktop, "
                           "or save a snapshot with --out FILE.png")
    explore_main(state)
    return 0


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """The ``explore`` subcommand and its options."""
    explore = sub.add_parser("explore", help="the interactive explorer window")
    explore.add_argument("--out", type=values.figure_path,
                         help="save a snapshot of the starting state instead of opening a window")
    explore.add_argument("--ratio", type=values.real(), help="starting imbalance ratio (default 4)")
    explore.add_argument("--classes", type=values.integer(), help="starting number of classes (default 4)")
    explore.add_argument("--tau", type=values.real(), help="starting temperature (default 0.5)")
    explore.add_argument("--relu", action="store_true", help="start with ReLU on")
    cache_option(explore)
    explore.set_defaults(handler=cmd_explore)
