"""The machinery of a runnable theorem check: a claim, the instances it tries, what it measures, a
tolerance, and pass or fail.

A :class:`Check` is data. ``instances(quick)`` lists the instances (problems, or other inputs);
``measure(instance, tools)`` returns ``(value, details)`` for one instance. The check's measured value
is the worst over its instances (the largest for ``"at_most"`` checks, the smallest for
``"at_least"``), and it passes when that worst value is on the right side of ``tolerance``.

``tools`` (:class:`Tools`) carries the predictor and the solvers a check uses, so a test can hand a
check a wrong prediction or a broken solver and see it fail.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence



def _default(name: str) -> Callable:
    """Look a default tool up lazily (the solvers import JAX and cvxpy)."""
    def call(*args, **kwargs):
        if name == "predict":
            from theory_checks.predictions import predict as fn
        elif name == "ib":
            from theory_checks.information_bottleneck import analyze as fn
        elif name == "certify":
            from solvers.certificate import certify_embeddings as fn
        elif name in ("gd", "gd_many"):
            from solvers import gd
            fn = gd.solve if name == "gd" else gd.solve_many
        else:
            from solvers import convex
            fn = {"convex": convex.solve_relaxation, "reduced": convex.solve_reduced}[name]
        return fn(*args, **kwargs)
    call.__name__ = name
    return call


@dataclass(frozen=True)
class Tools:
    """The predictor and solvers a check calls; replace any of them to test that a check can fail."""

    predict: Callable = field(default_factory=lambda: _default("predict"))
    gd: Callable = field(default_factory=lambda: _default("gd"))
    gd_many: Callable = field(default_factory=lambda: _default("gd_many"))
    convex: Callable = field(default_factory=lambda: _default("convex"))
    reduced: Callable = field(default_factory=lambda: _default("reduced"))
    ib: Callable = field(default_factory=lambda: _default("ib"))
    certify: Callable = field(default_factory=lambda: _default("certify"))


@dataclass(frozen=True)
class Check:
    """One claim of docs/theory.md as a runnable check.

    ``measures`` says in words what the measured number is; ``comparison`` is ``"at_most"`` (pass when
    the worst value <= tolerance) or ``"at_least"`` (pass when the worst value >= tolerance);
    ``why_tolerance`` justifies the tolerance.
    """

    name: str
    source: str
    claim: str
    measures: str
    tolerance: float
    why_tolerance: str
    instances: Callable[[bool], Sequence[Any]]
    measure: Callable[[Any, Tools], tuple[float, dict]]
    comparison: str = "at_most"
    describe: Callable[[Any], Any] = field(default=lambda inst: inst.describe() if hasattr(inst, "describe") else repr(inst))

    def passes(self, value: float) -> bool:
        if value != value:  # NaN never passes
            return False
        return value <= self.tolerance if self.comparison == "at_most" else value >= self.tolerance

    def run(self, quick: bool = False, tools: Tools | None = None) -> "CheckResult":
        """Run every instance; an exception makes the check fail with its message (never hidden)."""
        tools = tools or Tools()
        start = time.perf_counter()
        rows: list[dict] = []
        try:
            for instance in self.instances(quick):
                value, details = self.measure(instance, tools)
                rows.append({"instance": self.describe(instance), "value": float(value), **details})
        except Exception as err:  # noqa: BLE001 - a check reports what broke instead of crashing the run
            return CheckResult(self, False, float("nan"), time.perf_counter() - start, rows,
                               error=f"{type(err).__name__}: {err}",
                               trace=traceback.format_exc(limit=4))
        values = [r["value"] for r in rows]
        worst = max(values) if self.comparison == "at_most" else min(values)
        if any(v != v for v in values):
            worst = float("nan")
        return CheckResult(self, self.passes(worst), worst, time.perf_counter() - start, rows)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    measured: float
    seconds: float
    instances: list[dict]
    error: str | None = None
    trace: str | None = None

    def to_dict(self) -> dict:
        c = self.check
        return {"name": c.name, "source": c.source, "claim": c.claim, "passed": self.passed,
                "measured": self.measured, "tolerance": c.tolerance, "comparison": c.comparison,
                "measures": c.measures, "why_tolerance": c.why_tolerance, "seconds": self.seconds,
                "instances": self.instances, "error": self.error}


#: A progress reporter: called with the list of items and a label, it yields the items (a front end
#: passes its progress bar, e.g. ``ufm.app.progress.progress``; None runs silently).
Progress = Callable[..., Iterable]


def each(items: Sequence, label: str, progress: Progress | None) -> Iterable:
    """``items`` through the reporter ``progress`` (or as they are when it is None)."""
    return items if progress is None else progress(list(items), label=label)


def run_checks(checks: Sequence[Check], quick: bool = False, tools: Tools | None = None,
               progress: Progress | None = None) -> list[CheckResult]:
    """Run checks in order, reporting to ``progress`` (see :data:`Progress`)."""
    results = []
    for check in each(checks, "verify", progress):
        results.append(check.run(quick=quick, tools=tools))
    return results
