"""What every command does around its work: start it (the compile cache, the imports), time it, and
the statuses that make it exit 1."""

from __future__ import annotations

import argparse


def start_work(args: argparse.Namespace, *modules: str) -> None:
    """Every check has passed: turn the compile cache on (unless ``--no-cache`` or ``UFM_NO_CACHE``;
    :func:`ufm.compile_cache.enable_compile_cache`), import the ``modules`` the work needs, and end the
    ``startup`` phase of the call's clock."""
    import importlib

    from ufm import compile_cache

    if not (args.no_cache or compile_cache.cache_disabled_by_environment()):
        compile_cache.enable_compile_cache()
    for module in modules:
        importlib.import_module(module)
    args.clock.mark("startup")


def timed(args: argparse.Namespace, report: dict, phase: str, inner: dict | None = None) -> dict:
    """``report`` with ``seconds`` (the call's wall time so far) and ``timings`` (its split,
    :class:`ufm.app.timings.CallClock`), ``phase`` ending now."""
    args.clock.mark(phase)
    seconds, timings = args.clock.split(inner)
    return dict(report, seconds=seconds, timings=timings)


def timings_line(report: dict) -> str:
    """``seconds 4.2 (startup 0.9, compile 2.1, solve 0.3, ...)`` for the text output."""
    parts = ", ".join(f"{k} {v:.2g}" for k, v in report["timings"].items())
    return f"{report['seconds']:.3g} s wall ({parts})"


#: Solver statuses that make a command exit 1: a failure, or a result the certificate does not prove.
FAILED = ("error", "not_converged", "stationary", "optimal_inaccurate")


#: How a tally of starts names each status.
STATUS_WORDS = {"optimal": "certified optimal"}
