"""A positive number known by its logarithm, for values below float64's range.

At small temperatures the excess E = e^{log E} falls below the smallest float64 (log E < -745 at
tau = 1e-3 is common), so ``float(E)`` is 0 while ``log E`` and every ratio (the relative gap) are
exact. :class:`LogNumber` carries such a value to the report: ``float()`` of it is the float64 value
(0 where it underflows), and :meth:`LogNumber.decimal` writes it in full as decimal text
(``"2.51239e-434"``), which is how the command's JSON and text print it.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

#: Below this log a float64 loses relative precision (the smallest normal float64, e^-708.4).
LOG_SMALLEST_NORMAL = math.log(2.2250738585072014e-308)


@dataclass(frozen=True)
class LogNumber:
    """The number e^``log`` (``log`` finite)."""

    log: float

    def __float__(self) -> float:
        return math.exp(self.log)

    def decimal(self, digits: int = 15) -> str:
        """e^log as ``m.mmm...e-XXX`` with ``digits`` significant digits: the exponential of the float
        ``log`` exactly (Python's ``decimal`` at 40 digits), so the digits are as good as ``log`` is."""
        context = decimal.Context(prec=40, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)
        text = format(context.exp(decimal.Decimal(self.log)), f".{digits - 1}e")
        mantissa, exponent = text.split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"


def exact(value: float | None, log: float | None) -> float | LogNumber | None:
    """``value``, or :class:`LogNumber` ``(log)`` where the float ``value`` has lost relative precision
    (below the smallest normal float64) and ``log`` is finite."""
    if value is None or log is None or not math.isfinite(log) or log >= LOG_SMALLEST_NORMAL:
        return value
    return LogNumber(log)
