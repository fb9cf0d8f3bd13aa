"""What the explorer's widgets describe, and their ranges: plain data (no matplotlib), so that
``ufm explore`` checks its options before it loads a figure."""

from __future__ import annotations

from dataclasses import dataclass

#: The sliders' ranges (low, high) in the values shown; ``LOG_SLIDERS`` slide on log10 of the value.
SLIDER_RANGES = {"ratio": (1.0, 100.0), "k": (2, 20), "tau": (0.01, 2.0)}
LOG_SLIDERS = ("ratio", "tau")


@dataclass
class ExplorerState:
    """What the widgets describe. ``n_max``: examples in the largest class for the reduced program (200,
    so R = 100 still leaves 2 in the smallest; its cost does not depend on the counts); ``gd_n_max``:
    the same for gradient descent (batchings, "run GD"), whose cost grows with n (40: exact ratios up
    to 20, the smallest class rounded to 2 above). The metrics show the counts actually solved."""

    ratio: float = 4.0
    k: int = 4
    tau: float = 0.5
    relu: bool = False
    profile: str = "step"
    batching: str = "full"
    n_max: int = 200
    gd_n_max: int = 40
