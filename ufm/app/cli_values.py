"""The ``ufm`` command's value checks: one ``argparse`` type per kind of value.

Each function below (or the function it returns) turns the text of one option into its value, or
raises ``argparse.ArgumentTypeError`` with a message naming the problem and the fix; ``argparse``
prefixes the option's name and the command prints it as one line with exit code 2 (``ufm.app.cli``).
Nothing here computes anything: these checks run before any work.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Callable

from ufm.atomic import free_bytes

_INTEGER = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: Most values a list or a start:stop:count range may hold (a sweep's points).
MAX_POINTS = 1000
FIGURE_FORMATS = (".png", ".pdf", ".svg")
#: Free space an output file's disk must have before any work (a figure is 0.05-2 MiB, a report less);
#: the file's exact size is checked again when it is written (``ufm.atomic.write_bytes_atomically``).
MIN_FREE_BYTES = 8 * 2 ** 20
#: Most classes ``--counts`` may list (the same bound as ``--classes``).
MAX_CLASSES = 10 ** 6


def _error(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _as_int(text: str, what: str = "an integer") -> int:
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise _error(f"{text!r} is not {what}; write it in digits, e.g. 8")
    return int(text)


def _as_float(text: str) -> float:
    text = text.strip()
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise _error(f"{text!r} is not a finite number")
    if not _REAL.fullmatch(text):
        raise _error(f"{text!r} is not a number; write it like 0.5, 2 or 1e-3")
    value = float(text)
    if not math.isfinite(value):
        raise _error(f"{text!r} is not a finite number")
    return value


def _in_range(value, lo, hi, lo_open: bool = False, hi_open: bool = False) -> None:
    low_ok = lo is None or (value > lo if lo_open else value >= lo)
    high_ok = hi is None or (value < hi if hi_open else value <= hi)
    if not (low_ok and high_ok):
        left = "-inf" if lo is None else _number(lo)
        right = "inf" if hi is None else _number(hi)
        interval = f"{'(' if lo_open or lo is None else '['}{left}, {right}{')' if hi_open or hi is None else ']'}"
        raise _error(f"{_number(value)} is outside the allowed range {interval}")


def _number(value) -> str:
    """The value as written back to the user: a float in the fewest digits that give it exactly (a
    rounded bound would contradict the value: "0.001 is outside [0.001, 100]")."""
    if not isinstance(value, float):
        return str(value)
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer written in digits (``2.5`` and ``1e3`` are refused) within [lo, hi]."""
    def parse(text: str) -> int:
        value = _as_int(text)
        _in_range(value, lo, hi)
        return value
    parse.__name__ = "integer"
    return parse


def real(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = False) -> Callable[[str], float]:
    """A finite number within the interval (open ends where asked)."""
    def parse(text: str) -> float:
        value = _as_float(text)
        _in_range(value, lo, hi, lo_open, hi_open)
        return value
    parse.__name__ = "number"
    return parse


def _items(text: str, limit: int = MAX_POINTS) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(x == "" for x in items):
        raise _error(f"{text!r} must be a comma-separated list without empty entries, e.g. 1,2,4")
    if len(items) > limit:
        raise _error(f"the list holds {len(items)} values; at most {limit}")
    return items


def counts(text: str) -> tuple[int, ...]:
    """Class counts ``8,8,2,2``: at least two whole numbers, each at least 1 (SCL's rule, at least 2 for a
    positive pair, is :func:`ufm.app.options.problem_counts`'s: cross-entropy takes a class of one)."""
    values = []
    for item in _items(text, MAX_CLASSES):
        value = _as_int(item, "a whole number of examples")
        if value < 1:
            raise _error(f"a class with {value} examples is no class; every count must be at least 1, and at "
                         f"least 2 for SCL (got {text})")
        values.append(value)
    if len(values) < 2:
        raise _error(f"{text!r} names one class; give at least two counts, e.g. 8,8")
    return tuple(values)


def reals(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
          hi_open: bool = False) -> Callable[[str], list[float]]:
    """A list ``1,2,4`` or an evenly spaced range ``start:stop:count`` (count >= 1) of finite numbers
    within the interval."""
    def parse(text: str) -> list[float]:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise _error(f"{text!r}: a range is start:stop:count, e.g. 1:16:6")
            start, stop = _as_float(parts[0]), _as_float(parts[1])
            count = _as_int(parts[2], "a whole number of points")
            if not 1 <= count <= MAX_POINTS:
                raise _error(f"{text!r}: the count of points must lie in [1, {MAX_POINTS}] (got {count})")
            if count == 1 and start != stop:
                raise _error(f"{text!r}: a range of 1 point would drop its stop {parts[1]}; give a count of at "
                             f"least 2, or the one value {parts[0]}")
            step = 0.0 if count == 1 else (stop - start) / (count - 1)
            values = [start + i * step for i in range(count - 1)] + [stop] if count > 1 else [start]
        else:
            values = [_as_float(x) for x in _items(text)]
        for v in values:
            _in_range(v, lo, hi, lo_open, hi_open)
        _distinct(values, text)
        return values
    parse.__name__ = "list"
    return parse


def _distinct(values: list, text: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise _error(f"{text!r} holds {_number(v)} twice; a sweep runs each point once")
        seen.add(v)


def integers(lo: int | None = None, hi: int | None = None) -> Callable[[str], list[int]]:
    """A list ``6,8,12`` of integers within [lo, hi]."""
    def parse(text: str) -> list[int]:
        values = [_as_int(x) for x in _items(text)]
        for v in values:
            _in_range(v, lo, hi)
        _distinct(values, text)
        return values
    parse.__name__ = "list"
    return parse


def names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A list ``a,b`` of distinct names from ``choices``."""
    def parse(text: str) -> list[str]:
        values = _items(text)
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise _error(f"unknown {unknown[0]!r}; choose from {', '.join(choices)}")
        if len(set(values)) != len(values):
            raise _error(f"{text!r} names one value twice")
        return values
    parse.__name__ = "list"
    return parse


def _stat_safely(check: Callable[[Path], Path], path: Path) -> Path:
    """``check(path)``, with an operating-system error (a name too long, a directory not searchable)
    turned into the option's one-line error."""
    try:
        return check(path)
    except OSError as err:
        raise _error(f"{str(path)[:80]}{'...' if len(str(path)) > 80 else ''}: {err.strerror or err}") from None


def _writable(path: Path) -> Path:
    return _stat_safely(_writable_unsafe, path)


def _writable_unsafe(path: Path) -> Path:
    """``path`` if a file can be written there: checked by opening it for appending (and removing it
    again if it did not exist), which also catches /proc, read-only mounts and permissions."""
    if path.is_dir():
        raise _error(f"{path} is a directory; give a file name inside it")
    parent = path.parent
    if not parent.exists():
        raise _error(f"the directory {parent} does not exist; create it first or write elsewhere")
    if not parent.is_dir():
        raise _error(f"{parent} is a file, not a directory; write elsewhere")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        raise _error(f"{path} cannot be written ({err.strerror or err}); write elsewhere") from None
    if not existed:
        path.unlink()
    if not os.access(parent, os.W_OK):
        raise _error(f"the directory {parent} cannot be written (the file is written beside its target, then "
                     "renamed into place, so that a failed write never damages it); write elsewhere")
    free = free_bytes(parent)
    if free < MIN_FREE_BYTES:
        raise _error(f"the disk of {parent} has {free / 2 ** 20:.1f} MiB free, and a figure or report may need "
                     f"up to {MIN_FREE_BYTES // 2 ** 20} MiB; free space or write elsewhere")
    return path


def figure_path(text: str) -> Path:
    """A figure file to write: extension .png, .pdf or .svg, in an existing writable directory."""
    path = Path(text)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise _error(f"{text!r} must end in {', '.join(FIGURE_FORMATS)} (the extension picks the format)")
    return _writable(path)


def json_path(text: str) -> Path:
    """A JSON file to write (extension .json), in an existing writable directory."""
    path = Path(text)
    if path.suffix.lower() != ".json":
        raise _error(f"{text!r} must end in .json")
    return _writable(path)


def readable_file(text: str) -> Path:
    """An existing, readable file (not a directory)."""
    if not text.strip():
        raise _error("the file name is empty")
    return _stat_safely(_readable_unsafe, Path(text))


def _readable_unsafe(path: Path) -> Path:
    text = str(path)
    if path.is_dir():
        raise _error(f"{text} is a directory; give the JSON file inside it")
    if not path.exists():
        raise _error(f"{text} does not exist")
    if not path.is_file():
        raise _error(f"{text} is not a regular file; give a JSON file")
    if not os.access(path, os.R_OK):
        raise _error(f"{text} is not readable; check its permissions")
    return path
