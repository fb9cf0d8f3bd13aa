"""The one exception type the toolkit raises for bad input."""

from __future__ import annotations


class ProblemError(ValueError):
    """Bad input: the message names the problem and how to fix it.

    The ``ufm`` command turns it into a one-line error (exit code 2) instead of a traceback.
    """
