"""The ``ufm`` command (its contract: docs/cli.md): the parser and a call, from argv to the exit code.
The verbs are :mod:`ufm.app.commands` (one module each), the shared problem options
:mod:`ufm.app.options`, the output :mod:`ufm.app.render`.

Exit codes: 0 success; 1 a solver failure or a result the certificate does not prove (``error``,
``not_converged``, ``stationary``, ``optimal_inaccurate``), or an internal error; 2 bad input. Bad input is caught before any
work: every value by its ``argparse`` type (:mod:`ufm.app.cli_values`), every combination of options and
the memory a run would need (:mod:`solvers.sizing`) by the command's checks; it ends with one line
``ufm <command>: error: ...`` on stderr naming the problem and the fix, never a traceback. With
``--json`` a JSON object is printed on stdout whatever the exit code (``{"error", "exit_code"}`` where
nothing was computed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from typing import Sequence


from ufm.app.commands import batches, compare, explore, landscape, predict, solve, sweep, verify
from ufm.app import signals
from ufm.app.timings import CallClock
from ufm.errors import ProblemError


from ufm.app.parsing import Exit, Parser, UsageError


#: The verbs, in the order --help lists them.
COMMANDS = (batches, solve, predict, compare, verify, sweep, landscape, explore)


def build_parser() -> argparse.ArgumentParser:
    """The ``ufm`` parser: each verb's module adds its subcommand (:mod:`ufm.app.commands`)."""
    from ufm import __version__

    parser = Parser(prog="ufm", description="The unconstrained features model with the supervised contrastive "
                                            "loss. Exit codes: 0 success, 1 solver failure or unproved result, "
                                            "2 bad input.")
    parser.add_argument("--version", action="version", version=f"ufm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def run() -> None:
    """The ``ufm`` console command: :func:`main` on ``sys.argv``, then exit. Once JAX is loaded the exit
    skips the interpreter's teardown (``os._exit`` after flushing the output): destroying JAX's and
    XLA's objects took 0.2 s of every call here, all of it after the answer was out."""
    code = main(from_process_start=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if "jax" in sys.modules:
        os._exit(code)
    sys.exit(code)


#: A value that starts with a minus sign and a digit (``-3,3``, ``-1:1:3``, ``-0.5``): no option does.
_NEGATIVE_VALUE = re.compile(r"-[0-9.]")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--counts -3,3`` as ``--counts=-3,3``: argparse reads a token that starts with '-' and is not a
    plain negative number as an option, and would answer "expected one argument" instead of checking
    the value."""
    out: list[str] = []
    for token in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE_VALUE.match(token)):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _command_name(argv: Sequence[str]) -> str:
    """``ufm solve``, ``ufm sweep imbalance``: the command an error line names."""
    return f"ufm {' '.join(a for a in argv[:2] if not a.startswith('-'))}".strip()


def main(argv: Sequence[str] | None = None, *, validate_only: bool = False,
         from_process_start: bool = False) -> int:
    """Run the ``ufm`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit code.

    ``validate_only``: check everything (values, combinations, memory, output paths) and return 0
    without computing: the same checks a real run makes first. ``from_process_start``: this call is
    the whole process (the console command), so ``seconds`` counts from the program's start; otherwise
    from this call.
    """
    argv = _attach_negative_values(list(sys.argv[1:] if argv is None else argv))
    as_json = "--json" in argv
    clock = CallClock(from_process_start)
    command = _command_name(argv)
    signals.CALL.update(command=command, json=as_json, clock=clock, finished_items=[])
    _show_warning.cache_said = False
    try:
        _refuse_repeats(argv)
        args = build_parser().parse_args(argv)
        args.validate_only, args.clock, args.command_name = validate_only, clock, command
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args) or 0)
    except ProblemError as err:
        return _fail(f"{command}: error: {err}", 2, as_json)
    except Exit as done:              # the output is out; only the exit code is left
        return done.code
    except SystemExit as done:        # --help, --version
        return int(done.code or 0) if isinstance(done.code, (int, type(None))) else 2
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:    # a file that could not be written after all (the checks found it writable)
        return _fail(f"ufm: error: {err}", 1, as_json)
    except MemoryError:
        return _fail("ufm: error: ran out of memory although the size estimate fit; retry with fewer examples "
                     "or --chunk-size", 1, as_json)
    except Exception as err:  # a bug: one line, the traceback on request
        if os.environ.get("UFM_TRACEBACK"):
            raise
        return _fail(f"ufm: internal error: {type(err).__name__}: {err} (a bug; please report it with the "
                     "command line; UFM_TRACEBACK=1 shows the traceback)", 1, as_json)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (``ufm: warning: ...``); the compile cache's warnings (ours, and
    JAX's about its persistent cache entries) once per call, since one cause repeats per program."""
    text = " ".join(str(message).split())
    cache = "compile cache" in text or "persistent compilation cache" in text
    if cache:
        if getattr(_show_warning, "cache_said", False):
            return
        _show_warning.cache_said = True
    print(f"ufm: warning: {text}", file=sys.stderr)


#: Options that may be given more than once (they accumulate).
REPEATABLE = ("--only",)


def _refuse_repeats(argv: list[str]) -> None:
    """An option given twice is an error (argparse would keep the last one silently)."""
    seen = set()
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name.startswith("--") and name not in REPEATABLE:
            if name in seen:
                raise UsageError(f"{name} is given twice; give it once")
            seen.add(name)


def _fail(message: str, code: int, as_json: bool) -> int:
    message = " ".join(message.split())     # one line, whatever the exception held
    print(message, file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code}))
    return code
