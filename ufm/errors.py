"""The one exception type the toolkit raises for bad input, and the checks of plain values that raise it."""

from __future__ import annotations

import math

import numpy as np


class ProblemError(ValueError):
    """Bad input: the message names the problem and how to fix it.

    The ``ufm`` command turns it into a one-line error (exit code 2) instead of a traceback.
    """


class OutputError(OSError):
    """A result file could not be written (a full disk, a lost permission): the message names the
    path and the fix; the file that was there is unchanged (:mod:`ufm.atomic`). The command exits 1
    (the work was done; with ``--json`` its numbers are still printed)."""


def whole_number(value: object, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool, not a float such as 2.7) within
    [minimum, maximum]; :class:`ProblemError` naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ProblemError(f"{name} must be an integer (got {value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ProblemError(f"{name} must be at least {minimum} (got {value})")
    if maximum is not None and value > maximum:
        raise ProblemError(f"{name} must be at most {maximum} (got {value})")
    return value


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number: a Python or NumPy int or float, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def finite_number(value: object, name: str) -> float:
    """``value`` as a finite float; :class:`ProblemError` naming ``name`` otherwise (bools refused)."""
    if not is_number(value):
        raise ProblemError(f"{name} must be a number (got {value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ProblemError(f"{name} must be finite (got {value})")
    return value
