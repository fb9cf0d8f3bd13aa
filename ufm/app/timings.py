"""The wall time of one ``ufm`` call and its split: what the command prints as ``seconds`` and
``timings`` (docs/cli.md "Time").

``seconds`` runs from the start of the program (the interpreter's own start included, read from the
operating system where it says; :func:`process_age`) to the end of the command's output, so it is what a script calling
``ufm`` waits for. ``timings`` splits it into phases that add up to it:

- ``startup``: interpreter, imports, argument parsing, the checks, building the problem;
- ``compile``: building compiled programs (trace, lower and compile, or load from the compile cache;
  :func:`ufm.programs.compile_seconds`), wherever it happened;
- the command's own phases, without the compile inside them (``solve``: ``solve`` and
  ``certificate``; others: ``work``);
- ``report``: the prediction and the report after the work (``solve``), printing and files.
"""

from __future__ import annotations

import os
import time


def process_age() -> float:
    """Seconds since this program started (0 where the operating system does not say), to 1 / CLK_TCK
    (10 ms): Linux's /proc/self/stat start time against /proc/uptime.

    That start time is the fork, which is earlier than the program's own start where a shell ran other
    commands and then replaced itself with this one (``bash -c "pip install . && ufm verify"`` execs
    ``ufm`` in the shell that waited for ``pip``). Such a process has reaped children before this
    program could start any (their CPU time is in /proc/self/stat's cutime and cstime); there the age
    is the process's own CPU time instead: the interpreter's start and the imports, which run on one
    thread (the shell's own CPU before the exec, milliseconds, included). A shell that only waited
    (``sleep 5 && ufm ...``: a child without CPU time) is not told apart: its wait counts."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        if cutime + cstime > 0:
            return (utime + stime) / ticks
        return max(0.0, uptime - int(fields[19]) / ticks)
    except (OSError, ValueError, IndexError):
        return 0.0


class CallClock:
    """Marks on one clock (``time.perf_counter``) from the start of the call: ``mark(name)`` ends the
    phase ``name`` now; :meth:`split` turns the marks into ``(seconds, timings)``.

    ``from_process_start``: the call is the process (the ``ufm`` command): the clock starts at the
    program's start (:func:`process_age`). Otherwise (``main`` called from Python) it starts now."""

    def __init__(self, from_process_start: bool = False) -> None:
        self.start = time.perf_counter() - (process_age() if from_process_start else 0.0)
        self.compiled_before = self._compiled()    # compiled earlier in this process: not this call's
        self.marks: list[tuple[str, float, float]] = []     # (phase, end time, compile seconds at its end)

    @staticmethod
    def _compiled() -> float:
        import sys

        programs = sys.modules.get("ufm.programs")         # not loaded yet: nothing compiled
        return programs.compile_seconds() if programs is not None else 0.0

    def mark(self, phase: str) -> None:
        self.marks.append((phase, time.perf_counter(), self._compiled()))

    def split(self, inner: dict[str, float] | None = None) -> tuple[float, dict[str, float]]:
        """``(seconds, timings)``: the wall time so far, and per phase its wall time less the compile
        made in it; ``compile`` the compile of every phase. ``inner``: seconds of a part measured inside
        a phase (``{"certificate": s}``), moved out of the phase that holds it (the one before)."""
        self.mark("report")
        timings: dict[str, float] = {}
        last_time, last_compile = self.start, self.compiled_before
        for phase, end, compiled in self.marks:
            timings[phase] = timings.get(phase, 0.0) + (end - last_time) - (compiled - last_compile)
            last_time, last_compile = end, compiled
        timings["compile"] = last_compile - self.compiled_before
        for name, seconds in (inner or {}).items():
            holder = next(p for p, _, _ in reversed(self.marks) if p not in ("report", name))
            seconds = max(0.0, min(seconds, timings[holder]))
            timings[holder] -= seconds
            timings[name] = timings.get(name, 0.0) + seconds
        return last_time - self.start, {k: max(v, 0.0) for k, v in timings.items()}
