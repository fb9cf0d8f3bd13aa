"""Ctrl-C and SIGTERM end the ``ufm`` command at once with one line and exit 130 / 143.

Python runs its signal handlers on the main thread between bytecodes, so a signal that arrives while
the main thread waits in a long compiled call is handled only when the call returns (10 s into a
large solve), and a KeyboardInterrupt raised inside JAX's machinery ended some runs in a segmentation
fault. Instead :func:`install` blocks SIGINT and SIGTERM in the main thread before any other thread
exists (every thread made later, JAX's and XLA's included, inherits the mask) and leaves them to one
thread that waits for them (``signal.sigwait``). That thread removes the temporary files being
written (:data:`ufm.atomic.PENDING`; the target files are untouched), prints the line (and, with
``--json``, a JSON object saying what was interrupted and what had finished: the phases, then the
checks of ``verify`` or the points of a sweep, :func:`ufm.app.progress.recorded`) and ends the
process with ``os._exit``.

Only the console command installs it (:func:`ufm.app.console.run`, before NumPy's import starts its
BLAS threads); ``main`` called from Python keeps the caller's signal handling. This module imports
nothing but the standard library at its top for that reason.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

#: What the running call is: set by :func:`ufm.app.cli.main` as soon as it knows.
CALL: dict = {"command": "ufm", "json": False, "clock": None}
NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def install() -> bool:
    """Route SIGINT and SIGTERM to the waiting thread; False where the platform cannot (no
    ``pthread_sigmask``: the default handling stays)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, set(NAMES))
    threading.Thread(target=_wait, name="ufm-signals", daemon=True).start()
    return True


def _wait() -> None:
    received = signal.sigwait(set(NAMES))
    end(received)


def end(received: int) -> None:
    """Report the signal ``received`` for the running call and exit with 128 + its number."""
    from ufm.atomic import (
        remove_pending,  # not at the top: install() runs before NumPy is imported
    )

    code = 128 + int(received)
    remove_pending()
    clock = CALL.get("clock")
    phases = [phase for phase, _, _ in clock.marks] if clock is not None else []
    items = list(CALL.get("finished_items") or [])
    finished = phases + items
    after = ", ".join(phases + ([f"{len(items)} finished item{'s' * (len(items) != 1)} ({items[-1]} last)"]
                                if items else []))
    line = (f"{CALL['command']}: interrupted by {NAMES.get(received, received)}"
            + (f" after {after}" if after else "")
            + "; no result, and no file was left half-written")
    try:
        if CALL.get("json"):
            sys.stdout.write(json.dumps({"error": line, "exit_code": code, "interrupted": NAMES.get(received),
                                         "finished": finished}) + "\n")
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    finally:
        os._exit(code)
