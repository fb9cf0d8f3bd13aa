"""What the command prints and writes: JSON (exact where a number is below float64's range), tables,
the solve and sweep reports, and figures written whole or not at all."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ufm.app import cli_values as values
from ufm.app.parsing import Exit
from ufm.app.running import timed, timings_line
from ufm.errors import OutputError, ProblemError
from ufm.lognumber import LogNumber

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from theory_checks.sweeps import SweepResult

#: A LogNumber in the JSON text: its decimal, unquoted (a JSON number below float64's range).
_EXACT = "\u0000exact:"


def to_jsonable(value: object) -> object:
    """Convert NumPy / JAX values inside dicts and lists to plain JSON types (a
    :class:`ufm.lognumber.LogNumber` to a marker that :func:`json_text` writes as its decimal)."""
    if isinstance(value, LogNumber):
        return _EXACT + value.decimal()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def json_text(obj: object) -> str:
    """The JSON text of a report: numbers below float64's range (LogNumber) written in full, as JSON
    number literals (``json.loads(text, parse_float=decimal.Decimal)`` keeps them)."""
    text = json.dumps(to_jsonable(obj), indent=2)
    return re.sub(r'"\\u0000exact:([0-9.e+-]+)"', r"\1", text)


def print_json(obj: object) -> None:
    print(json_text(obj))


def print_table(rows: Sequence[Sequence], header: Sequence[str]) -> None:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def fmt(value: object, digits: int = 10) -> str:
    if isinstance(value, LogNumber):
        return value.decimal(digits)
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


def print_solution(report: dict) -> None:
    print(f"method {report['method']}  counts {report['counts']}  tau {report['tau']}  relu {report['relu']}  "
          f"dim {report['dim']}  batching {report['batching']}")
    rows = [("loss (sum)", fmt(report["loss"], 12)), ("excess (loss - constant)", fmt(report["excess"], 6)),
            ("lower bound", fmt(report["lower_bound"], 12))]
    cert = report.get("certificate")
    if cert is not None:
        rows.append(("certificate", f"relative gap {cert['relative_gap']:.3g} on the excess "
                                    f"({'certified' if cert['certified'] else 'not certified'}, "
                                    f"{cert['method']}, {cert['seconds']:.2g} s)"))
    if "staircase" in report:
        sc = report["staircase"]
        first = sc["levels"][0]["rank"] if sc["levels"] else report["dim"]
        top = first + sum(level["lifted"] for level in sc["levels"])
        rows.append(("staircase", f"{sc['escapes']} escape(s), rank {first} -> {top}, "
                                  f"stopped: {sc['stop']}"
                                  + (f"; the point's Gram has rank {sc['rank']}" if sc.get("rank") is not None else "")))
    if "starts" in report:
        st = report["starts"]
        rows.append(("starts", f"{st['tried']} tried: {st['optimal']} optimal, {st['stationary']} stationary, "
                               f"{st['not_converged']} not converged, {st['error']} error; kept #{st['kept']}"))
    rows += [("predicted", f"{report['predicted']['geometry']} (loss {fmt(report['predicted']['loss'], 12)})"),
             ("distance to ETF", fmt(report["distance"]["etf"], 4)),
             ("distance to OF", fmt(report["distance"]["of"], 4)),
             ("distance to predicted", fmt(report["distance"]["predicted"], 4)),
             ("NC1", fmt(report["nc1"], 4)),
             ("within-class spread", fmt(report.get("within_class"), 4)),
             ("status", report["status"] + (f" ({report['message']})" if report["message"] else "")),
             ("iterations", report["iterations"]), ("seconds", timings_line(report))]
    print_table(rows, ("quantity", "value"))
    print("class-mean Gram:")
    for row in np.asarray(report["class_mean_gram"]):
        print("  " + " ".join(f"{v:+.4f}" for v in row))
    print(f"why: {report['predicted']['why']}")


def _status_points(result, select) -> list[str]:
    """'series at x: status' for every sweep point whose solver status ``select`` accepts."""
    return [f"{name} at {x:g}: {status}" for name, q in result.series.items()
            for x, status in zip(result.x, q.get("status", [])) if select(status)]


def print_sweep(result: SweepResult) -> None:
    """One table per series (rows: swept values; columns: every quantity), then any solver trouble."""
    counts = result.meta.get("counts")
    if not (isinstance(counts, list) and len(counts) == len(result.x)
            and all(isinstance(c, (list, tuple)) for c in counts)):
        counts = None                     # one count vector for the whole sweep: in the title instead
    for name, quantities in result.series.items():
        print(f"{name}:")
        header = [result.xlabel] + (["counts"] if counts else []) + list(quantities)
        rows = []
        for i, x in enumerate(result.x):
            row = [f"{x:g}"] + ([",".join(map(str, counts[i]))] if counts else [])
            row += [fmt(values[i], 6) if isinstance(values[i], (int, float)) else values[i]
                    for values in quantities.values()]
            rows.append(row)
        print_table(rows, header)
        print()
    trouble = _status_points(result, lambda status: status not in ("optimal", "converged"))
    if trouble:
        print("solver status not optimal at: " + "; ".join(trouble))
    if counts is None and result.meta.get("counts"):
        print(f"counts: {result.meta['counts']}")
    if result.meta.get("tau") is not None:
        print(f"tau: {result.meta['tau']:g}")


def figure_target(args: argparse.Namespace, default_name: str) -> Path | None:
    """Where the figure goes: ``--out``; with ``--json`` and no ``--out``, nowhere (None: the numbers
    were asked for, and nothing is written behind the user's back); else ``default_name`` in the
    current directory (printed). Checked writable before any work."""
    if args.out is not None:
        return args.out
    if getattr(args, "json", False):
        return None
    try:
        return values.figure_path(default_name)
    except argparse.ArgumentTypeError as err:
        raise ProblemError(f"no --out given and the default figure {default_name}: {err}; pass --out PATH") from None


def write_failure(write: Callable[[], object]) -> str | None:
    """Call ``write()``: None, or the message where it failed (:class:`ufm.errors.OutputError`: the old
    file is unchanged), which the caller reports beside the numbers it still prints."""
    try:
        write()
    except OutputError as err:
        return str(err)
    return None


def finish_figure(fig: Figure, data: dict, args: argparse.Namespace, path: Path | None, phase: str) -> None:
    """Save the figure (unless ``path`` is None: ``--json`` without ``--out``) and print the data
    (``--json``, with the call's ``seconds`` and ``timings``, ``phase`` the work just done) or where the
    figure went."""
    from ufm.app import plots

    failure = write_failure(lambda: plots.save(fig, path)) if path is not None else None
    path = None if path is None or failure else path.resolve()
    data = timed(args, dict(data, figure=None if path is None else str(path)), phase)
    if failure:
        data["error"] = failure
    if args.json:
        print_json(data)                       # the numbers, even where the figure was not written
        if path is not None:
            print(f"figure written to {path}", file=sys.stderr)
    else:
        if path is not None:
            print(f"figure written to {path}")
        print(f"seconds: {timings_line(data)}")
    if failure:
        print(f"{args.command_name}: error: {failure}", file=sys.stderr)
        raise Exit(1)
