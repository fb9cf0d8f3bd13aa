"""Solvers for the UFM: gradient descent (``solvers.gd``) and the convex relaxation (``solvers.convex``)."""

import ufm  # noqa: F401  (switches JAX to float64 before any solver traces)
