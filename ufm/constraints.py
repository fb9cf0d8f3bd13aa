"""The constraint sets of the UFM (docs/theory.md section 1), in NumPy.

- sphere: ``||h_i|| = 1`` for every row;
- sphere + nonnegativity (ReLU): additionally ``H >= 0``.
"""

from __future__ import annotations

import numpy as np


def retract(X: np.ndarray, relu: bool) -> np.ndarray:
    """Map rows X (m, d) back onto the constraint set: rows normalised; with ReLU clipped at 0 first,
    and a row with no positive entry becomes the unit vector of its largest coordinate (the same
    retraction as :func:`solvers.gd.retract`, which works in JAX). Returns float64 (m, d)."""
    X = np.asarray(X, dtype=np.float64)
    if relu:
        C = np.maximum(X, 0.0)
        dead = ~np.any(C > 0, axis=1)
        if dead.any():
            C[dead] = np.eye(X.shape[1])[np.argmax(X[dead], axis=1)]
        X = C
    with np.errstate(invalid="ignore", divide="ignore"):   # non-finite rows stay non-finite
        return X / np.linalg.norm(X, axis=1, keepdims=True)
