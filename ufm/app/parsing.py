"""The command's argument parser: a one-line error instead of argparse's usage and exit, the
exceptions that end a command, and the options every command shares (``--json``, ``--out``,
``--no-cache``)."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ufm.app import cli_values as values
from ufm.errors import ProblemError


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="compile every program afresh and keep none (default: compiled programs are kept "
                             "in $UFM_CACHE_DIR, else ~/.cache/ufm-scl, and loaded by later calls; "
                             "UFM_NO_CACHE=1 does the same as this option)")


def output_options(parser: argparse.ArgumentParser, figure: bool = False) -> None:
    if figure:
        parser.add_argument("--out", type=values.figure_path,
                            help="figure file (.png, .pdf, .svg by extension; default ufm-landscape.png or "
                                 "ufm-sweep-<kind>.png in the current directory, path printed; with --json "
                                 "and no --out, no figure is written)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
