"""ufm-scl: the unconstrained features model (UFM) with the supervised contrastive loss (SCL).

Importing the package switches JAX to float64 (``jax_enable_x64``): verification runs in double
precision; float32 is an explicit option of the solvers.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ufm import batching, geometry  # noqa: E402
from ufm.batching import Batching, check_conditions, pack  # noqa: E402
from ufm.errors import ProblemError  # noqa: E402
from ufm.loss import problem_loss, scl_loss  # noqa: E402
from ufm.objectives.ce import CrossEntropy  # noqa: E402
from ufm.problem import Problem, Prototypes  # noqa: E402
from ufm.solution import Solution  # noqa: E402

__all__ = [
    "Batching", "CrossEntropy", "Problem", "ProblemError", "Prototypes", "Solution", "batching", "check_conditions",
    "geometry", "pack", "problem_loss", "scl_loss",
]
__version__ = "0.1.0"
