"""The check values docs/theory.md states in its prose are what an independent computation gives
(tests/reference.py's loops, the mpmath optimum's table in tests/test_reference_mp.py): a doc value
that drifts fails here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from reference import scl_loop
from test_reference_mp import _STEP_CHECKS

THEORY = (Path(__file__).resolve().parents[1] / "docs" / "theory.md").read_text()


def _prose(pattern: str) -> re.Match:
    found = re.search(pattern, " ".join(THEORY.split()))
    assert found, pattern
    return found


def test_orthogonal_frame_loss_of_the_necessity_example():
    """Section 4: 4 classes x 4 examples, tau 0.5, batches {classes 0, 1} and {classes 2, 3}."""
    stated = float(_prose(r"the orthogonal frame has loss ([0-9.]+)").group(1))
    H = np.repeat(np.eye(4), 4, axis=0)
    labels = np.repeat(np.arange(4), 4)
    assert stated == pytest.approx(scl_loop(H, labels, 0.5, batches=[range(8), range(8, 16)]), abs=1e-12)


def test_excess_example_of_section_3():
    """Section 3: the constant of (8, 8, 2, 2) (16 log 7), L = constant + E at tau 0.5, and the optimal
    E per tau: those of the mpmath optimum's table."""
    found = _prose(r"the constant is 16 log 7 = ([0-9.]+) \(L = [0-9.]+ \+ E\), and at the optimum E = "
                   r"([0-9.e-]+) \(tau 0.5, so L = ([0-9.]+)\), ([0-9.e-]+) \(0.1\), ([0-9.e-]+) \(0.05\), "
                   r"([0-9.e-]+) \(0.02\), ([0-9.e-]+) \(0.01\)")
    constant = 16 * math.log(7)
    assert float(found.group(1)) == pytest.approx(constant, abs=5e-3)
    stated_e = [float(found.group(i)) for i in (2, 4, 5, 6, 7)]
    assert stated_e == [row[4] for row in _STEP_CHECKS]       # each proved against mpmath there
    assert float(found.group(3)) == pytest.approx(constant + stated_e[0], abs=5e-3)
