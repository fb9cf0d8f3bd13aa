"""Progress for sweeps, multi-start runs, the landscape and the check catalogue, on tqdm.

On a terminal the bar is tqdm's, a runtime dependency, instead of a hand-written one: it sizes itself
to the terminal, estimates the time left and rate-limits its redraws; in a Jupyter kernel it is
``tqdm.auto``'s notebook bar (a widget where ipywidgets is installed). Off a terminal (logs, CI, a
pipe) a redrawn bar would pile up carriage returns into one unreadable line, so there each step prints
one plain line (``label i/total elapsed name``). Everything goes to stderr, so ``--json`` output on
stdout stays parseable.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, Sequence, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (whose stderr is not a terminal but shows a live bar)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and getattr(get(), "kernel", None) is not None


def _is_terminal(stream) -> bool:
    return (hasattr(stream, "isatty") and stream.isatty()) or (stream is sys.stderr and _in_notebook())


def _log_line(stream, text: str) -> None:
    """One plain progress line (off a terminal), written at once."""
    stream.write(text.rstrip() + "\n")
    stream.flush()


def _bar(**options):
    """tqdm on a terminal, ``tqdm.auto`` (the notebook bar) in a Jupyter kernel."""
    if _in_notebook():
        from tqdm.auto import tqdm as auto_tqdm
        options.pop("dynamic_ncols", None)
        return auto_tqdm(**options)
    return tqdm(**options)


def progress(items: Iterable[T], total: int | None = None, label: str = "", enabled: bool = True,
             stream: TextIO | None = None) -> Iterator[T]:
    """Yield ``items`` while showing ``label |####  | i/total [elapsed<left]``; ``enabled=False`` is
    silent. Each item's ``name`` (a check, a stage) is shown beside the count."""
    stream = stream or sys.stderr
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    if not enabled:
        yield from items
        return
    if not _is_terminal(stream):
        start = time.perf_counter()
        for i, item in enumerate(items, 1):
            yield item
            name = getattr(item, "name", "")
            _log_line(stream, f"{label} {i}/{total} {time.perf_counter() - start:6.1f}s "
                              f"{name if isinstance(name, str) else ''}")
        return
    with _bar(total=total, desc=label, file=stream, dynamic_ncols=True, mininterval=0.1) as bar:
        for item in items:
            name = getattr(item, "name", None)
            if isinstance(name, str):
                bar.set_postfix_str(name, refresh=False)
            yield item
            bar.update(1)


def recorded(reporter: Callable[..., Iterable[T]] | None) -> Callable[..., Iterator[T]]:
    """A progress reporter (:func:`progress`, or None: silent) that also records each item once its
    work is done (the loop asked for the next one) in ``ufm.app.signals.CALL["finished_items"]``, so
    that an interrupt can say what finished: a check's ``name``, else ``"<label> <i>/<total>"`` (a
    sweep's point)."""
    from ufm.app import signals

    def run(items: Sequence[T], label: str = "") -> Iterator[T]:
        items = list(items)
        done = signals.CALL.setdefault("finished_items", [])
        source = items if reporter is None else reporter(items, label=label)
        for i, item in enumerate(source, 1):
            yield item
            name = getattr(item, "name", None)
            done.append(name if isinstance(name, str) else f"{label} {i}/{len(items)}")
    return run


class Stages:
    """Progress over named stages of one long computation (the landscape: starts, optimum, Hessian,
    slice): ``with Stages(["a", "b"], "landscape") as stage: stage("a"); ...; stage("b"); ...``.
    Each call closes the previous stage and names the next; ``enabled=False`` is silent."""

    def __init__(self, names: list[str], label: str = "", enabled: bool = True, stream: TextIO | None = None) -> None:
        self.names = list(names)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar = None
        self.done = 0
        self.start = time.perf_counter()

    def __enter__(self) -> "Stages":
        self.start = time.perf_counter()
        if self.enabled and _is_terminal(self.stream):
            self.bar = _bar(total=len(self.names), desc=self.label, file=self.stream, dynamic_ncols=True,
                            mininterval=0.0, bar_format="{desc} {n}/{total} stages [{elapsed}]")
        return self

    def __call__(self, name: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description_str(f"{self.label}: {name}", refresh=False)
            self.bar.update(self.done and 1)
        else:
            _log_line(self.stream, f"{self.label} {self.done + 1}/{len(self.names)} "
                                   f"{time.perf_counter() - self.start:6.1f}s {name}")
        self.done += 1

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description_str(f"{self.label}: done", refresh=False)
            self.bar.update(1 if self.done else 0)
            self.bar.close()
        else:
            _log_line(self.stream, f"{self.label} done {time.perf_counter() - self.start:6.1f}s")


class Ticker:
    """Progress for one step whose length is not known in advance (a solve: compile, descent,
    certificate): ``with Ticker("solve: gradient descent, n = 5000"): ...``. On a terminal a tqdm line
    whose elapsed time a background thread refreshes twice a second; off a terminal one line when it
    starts and one when it ends. ``enabled=False`` is silent."""

    def __init__(self, label: str, enabled: bool = True, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.bar = None
        self._stop = None
        self._thread = None
        self.start = time.perf_counter()

    def __enter__(self) -> "Ticker":
        import threading

        self.start = time.perf_counter()
        if not self.enabled:
            return self
        if _is_terminal(self.stream):
            self.bar = _bar(total=None, desc=self.label, file=self.stream, dynamic_ncols=True,
                            bar_format="{desc} [{elapsed}]")
            self._stop = threading.Event()

            def tick():
                while not self._stop.wait(self.interval):
                    self.bar.refresh()
            self._thread = threading.Thread(target=tick, daemon=True)
            self._thread.start()
        else:
            _log_line(self.stream, f"{self.label} ...")
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self._stop.set()
            self._thread.join()
            self.bar.close()
        elif exc[0] is None:                # a failure prints its own line; no "done" before it
            _log_line(self.stream, f"{self.label}: {time.perf_counter() - self.start:.1f}s")
