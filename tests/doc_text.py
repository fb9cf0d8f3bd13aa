"""What the tests of the docs share (test_doc_claims, test_doc_numbers, test_readme_claims,
test_architecture_claims): the passages they quote, found in a doc's whitespace-normalised text, and
the rounding of a printed number. A passage no longer in the doc raises RuntimeError, which says so
(not AssertionError: the test did not check anything yet)."""

from __future__ import annotations

import re
from decimal import Decimal


def says(text: str, where: str, *passages: str) -> None:
    """Each passage (literal, whitespace-normalised) is in ``text`` (the doc named ``where``)."""
    for passage in passages:
        if " ".join(passage.split()) not in text:
            raise RuntimeError(f"{where} no longer states: {passage}")


def quote(text: str, where: str, pattern: str) -> re.Match:
    """The passage of ``text`` (the doc named ``where``) matching the regex ``pattern``."""
    found = re.search(pattern, text)
    if not found:
        raise RuntimeError(f"{where} no longer states: {pattern}")
    return found


def half_unit(printed: str) -> float:
    """Half a unit of the last printed digit of ``printed`` ("35.714086" -> 5e-7, "1.55e-4" -> 5e-7)."""
    return 0.5 * 10.0 ** Decimal(printed).as_tuple().exponent


def rounds_to(value: float, printed: str) -> bool:
    """Whether ``value`` rounded to the digits of ``printed`` gives ``printed`` (within a hair)."""
    return abs(value - float(printed)) <= half_unit(printed) * (1 + 1e-9)
