"""A dependency-free progress bar for sweeps, multi-start runs and the check catalogue.

Writes to stderr (so ``--json`` output on stdout stays parseable); draws in place on a terminal and
prints one line per step otherwise (logs, CI).
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, label: str = "", enabled: bool = True,
             stream=None) -> Iterator[T]:
    """Yield ``items`` while showing ``label [####----] i/total elapsed``; ``enabled=False`` is silent."""
    stream = stream or sys.stderr
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    if not enabled:
        yield from items
        return
    tty = hasattr(stream, "isatty") and stream.isatty()
    start = time.perf_counter()

    def show(done: int, note: str = "") -> None:
        width = 24
        filled = int(width * done / max(total, 1))
        line = (f"{label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total} "
                f"{time.perf_counter() - start:6.1f}s {note}")
        stream.write(("\r" + line) if tty else line + "\n")
        stream.flush()

    if tty:
        show(0)
    for i, item in enumerate(items, 1):
        yield item
        show(i, str(getattr(item, "name", "")) if not tty else "")
    if tty:
        stream.write("\n")
        stream.flush()
