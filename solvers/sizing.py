"""The size guard: estimated memory of a solve, checked before anything is allocated.

Every estimate is in bytes and deliberately generous (the point is to refuse a run that cannot fit
in one line, not to predict the peak to the megabyte). The constants come from measured peaks on
the 2-core CI machine (float64, CPU):

- compiling gradient descent costs a fixed :data:`JIT_BYTES`;
- gradient descent on a batch of width w works in blocks of c anchors (``chunk_size``, or the
  kernel's own ``ufm.blocks.precise_default_block``, or ``ufm.blocks.plain_default_block`` for the
  plain phase of a deterministic batching: cache-sized on a CPU, c = w on a GPU) and holds a
  block's (c, w) logits and about five temporaries of the same shape (measured on the one-block path:
  peak resident memory grew by 4.4 * 8 w^2 bytes from w = 2000 to w = 4000): :data:`LOGIT_COPIES` = 6;
- deterministic batchings evaluate all batches at once (vmapped), random schemes one batch per step
  but pack every epoch's indices first (int32 index + bool mask per entry, plus the epoch's list);
- ``starts`` vmapped starts multiply the per-batch working set;
- the certificate's gradient blocks (``certificate_bytes``) are skipped, and the
  solution says so, above ``CACHE_BYTES``, so they add at most that much.

:func:`require` compares an estimate with :func:`memory_budget` (80 % of the machine's physical
memory) and raises :class:`ufm.ProblemError` naming the estimate and the way that fits.

Everything here is plain arithmetic on sizes (no JAX, no cvxpy), so that the command checks a request
before it loads them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from solvers.cvx_common import solver_call
from ufm.blocks import backend, plain_default_block, precise_default_block as default_block
from ufm.errors import ProblemError
from ufm.problem import Problem

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from ufm.batching import Batching

#: (w, w) float64 arrays alive at the peak of one batch's loss and gradient (measured, see above).
LOGIT_COPIES = 6
#: Compiling the solver (XLA) and its buffers: the peak grew by 350 MB at n = 1000 where the logits are
#: 8 MB (measured), so a fixed allowance.
JIT_BYTES = 512 * 2 ** 20
#: The certificate keeps its gradient blocks in memory up to this size and is skipped above it.
CACHE_BYTES = 3 * 2 ** 30
#: The certificate's peak against its gradient blocks: the blocks, the Gram and the slack beside them
#: (1.5x), plus a fixed 192 MiB (its eigensolver, scipy's imports). Fitted to peaks measured with
#: VmHWM (full batch, tau 0.5, 2 cores): n = 3000 (k = 4) 1.07 GiB, n = 6000 (k = 4, 8) 1.92 / 1.84 GiB;
#: the estimate then lies 1-9 % above each (peaks vary by about 7 % run to run; it lay 23-26 % below:
#: tests/test_sizing.py, slow).
CERTIFICATE_PEAK_FACTOR = 1.5
CERTIFICATE_OVERHEAD_BYTES = 192 * 2 ** 20
#: Share of the physical memory a run may plan to use.
BUDGET_SHARE = 0.8
#: n * d above this: the landscape's dense Hessian is skipped (memory and time grow as (n d)^2).
MAX_HESSIAN_SIZE = 600
#: On a CPU, vmapped starts pay off only while their logits stay in cache: measured on 2 cores
#: (64 starts, float64), relative to one start: n = 20: 20x all vmapped, 15x in groups of 4-16;
#: n = 100: 121x vs 63x in groups of 16; n = 300: 87x vs 30x one at a time; n = 1000: 146x vs 61x.
#: Groups are sized so that lanes * width^2 * itemsize <= this budget, between 1 and CPU_MAX_LANES.
CPU_LANE_BUDGET_BYTES = 2 * 2 ** 20
CPU_MAX_LANES = 16


def physical_memory() -> int:
    """Bytes of physical memory (16 GiB if the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2 ** 30


def memory_budget() -> int:
    """Bytes a single run may plan to use: :data:`BUDGET_SHARE` of :func:`physical_memory`."""
    return int(BUDGET_SHARE * physical_memory())


def batching_shape(counts: Sequence[int], batching: Batching, prototype_rows: int = 0) -> tuple[int, int]:
    """(number of batches per epoch, widest batch incl. ``prototype_rows``) of a
    :class:`~ufm.batching.Batching` for these class counts, without drawing any batch."""
    n, k = int(sum(counts)), len(counts)
    b = batching
    if b.scheme == "full":
        return 1, n + prototype_rows
    if b.scheme == "explicit":
        return len(b.explicit), max((len(x) for x in b.explicit), default=0) + prototype_rows
    size = int(b.batch_size)
    if b.scheme == "binding":
        return -(-(n - k) // max(size - k, 1)), min(size, n) + prototype_rows
    return -(-n // size), min(size, n) + prototype_rows


def batch_shape(problem: Problem) -> tuple[int, int]:
    """:func:`batching_shape` of a problem (its prototypes included)."""
    p = 0 if problem.prototypes is None else problem.k * problem.prototypes.per_class
    return batching_shape(problem.counts, problem.batching, p)


def input_bytes(counts: Sequence[int], batching: Batching, prototype_rows: int = 0) -> int:
    """Labels (8 n), one epoch's batches as index arrays (about 100 bytes of overhead each, and the
    scheme's Python lists while dealing, about 40 bytes per example) and their packing."""
    n = int(sum(counts))
    batches, width = batching_shape(counts, batching, prototype_rows)
    return 56 * n + batches * (100 + 9 * width)


def problem_bytes(problem: Problem) -> int:
    """:func:`input_bytes` of a problem."""
    p = 0 if problem.prototypes is None else problem.k * problem.prototypes.per_class
    return input_bytes(problem.counts, problem.batching, p)


def conditions_bytes(problem: Problem) -> int:
    """``ufm.check_conditions``: the problem's batches plus its (k, k) meeting matrices."""
    return problem_bytes(problem) + 3 * 8 * problem.k ** 2


def gd_bytes(problem: Problem, steps: int, chunk_size: int | None = None, starts: int = 1,
             certify: bool = True, lanes: int | None = None) -> int:
    """Gradient descent (``solvers.gd``) on ``problem`` for at most ``steps`` epochs (module docstring);
    ``starts`` starts of which ``lanes`` run side by side (default all; :func:`default_lanes`)."""
    batches, width = batch_shape(problem)
    # deterministic batchings run the plain form first (ufm.objectives.scl.plain), in larger blocks
    own = max(default_block(width, 8), 0 if problem.batching.is_random else plain_default_block(width, 8))
    rows = min(own if chunk_size is None else int(chunk_size), width)
    per_batch = LOGIT_COPIES * 8 * rows * width
    side_by_side = max(int(starts), 1) if lanes is None else max(min(int(lanes), int(starts)), 1)
    working = per_batch * (1 if problem.batching.is_random else batches) * side_by_side
    epochs = 0
    if problem.batching.is_random:
        epochs = int(steps) * (batches * width * 5 + problem.n * 8 + batches * 100)
    embeddings = 10 * 8 * problem.n * problem.dim * max(int(starts), 1) + 3 * 8 * problem.dim ** 2  # NC1: d x d
    certificate = (int(CERTIFICATE_PEAK_FACTOR * min(certificate_bytes(problem), CACHE_BYTES))
                   + CERTIFICATE_OVERHEAD_BYTES) if certify else 0
    return JIT_BYTES + problem_bytes(problem) + working + epochs + embeddings + certificate


def default_lanes(problem: Problem, runs: int, dtype: DTypeLike = np.float64, width: int | None = None) -> int:
    """How many runs (starts, problems) ``solvers.gd.solve_many`` / ``solve_batched`` vmap at once: all
    of them on a GPU/TPU; on a CPU as many as keep ``lanes * width^2 * itemsize`` within
    :data:`CPU_LANE_BUDGET_BYTES`, at most :data:`CPU_MAX_LANES`. ``width``: the widest batch
    (default: the problem's, prototypes included, :func:`batch_shape`)."""
    if backend() != "cpu":
        return runs
    if width is None:
        width = batch_shape(problem)[1]
    lanes = CPU_LANE_BUDGET_BYTES // (width * width * np.dtype(dtype).itemsize)
    return int(min(max(lanes, 1), CPU_MAX_LANES, runs))


def relaxation_bytes(problem: Problem, solver: str | None = None) -> int:
    """Estimated bytes of the n x n program (m = n + prototype rank): Clarabel's dense PSD scaling
    block, 8 (m(m+1)/2)^2; SCS keeps the canonicalised program, about 64 bytes per anchor-term entry."""
    W, _ = problem.prototype_rows()
    m = problem.n + (0 if W is None else int(np.linalg.matrix_rank(W)))
    if solver_call(solver, None)[0] == "CLARABEL":
        return 8 * (m * (m + 1) // 2) ** 2
    p = 0 if W is None else len(W)
    batches = problem.batches(0)
    return 64 * sum(len(b) + p for b in batches) * (max(len(b) for b in batches) + p)


def require_relaxation(problem: Problem, solver: str | None = None) -> None:
    """The size guard of the n x n program (:func:`require` on :func:`relaxation_bytes`)."""
    require(relaxation_bytes(problem, solver), f"the n x n program at n = {problem.n}",
            "solve by gradient descent, whose certificate scales to large n (--method gd), or use "
            "the reduced program for full batches (--method reduced)")


def certificate_bytes(problem: Problem) -> int:
    """The certificate's gradient blocks: 3 float64 (w, w) arrays per batch (no batch is drawn)."""
    batches, width = batch_shape(problem)
    return 8 * batches * width * width * 3


def reduced_bytes(problem: Problem) -> int:
    """The reduced k x k program (factored path and its certificate): a few dozen (k, k) arrays."""
    return problem_bytes(problem) + 64 * 8 * problem.k ** 2


def hessian_bytes(problem: Problem) -> int:
    """A dense Riemannian Hessian of the loss, (n d)^2 float64, with its eigendecomposition."""
    return 3 * 8 * (problem.n * problem.dim) ** 2


def slice_bytes(problem: Problem, resolution: int) -> int:
    """A loss slice of resolution^2 points evaluated together (vmapped), each one batch set of logits."""
    batches, width = batch_shape(problem)
    return resolution ** 2 * (2 * 8 * batches * width * width + 8 * problem.n * problem.dim)


def gib(nbytes: float, digits: int = 3) -> str:
    """Bytes as a short human string in binary units (GiB, TiB, PiB; MiB below), ``digits`` significant."""
    for unit, scale in (("PiB", 2 ** 50), ("TiB", 2 ** 40), ("GiB", 2 ** 30)):
        if nbytes >= scale:
            return f"{nbytes / scale:.{digits}g} {unit}"
    return f"{nbytes / 2 ** 20:.{digits}g} MiB"


def _apart(need: float, budget: float) -> tuple[str, str]:
    """``need`` and ``budget`` with as many digits as it takes for them to read differently (a need just
    above the budget read "18.8 GiB, more than the 18.8 GiB")."""
    for digits in range(3, 10):
        shown = gib(need, digits), gib(budget, digits)
        if shown[0] != shown[1]:
            return shown
    return shown


def require(need: int, what: str, ways: str) -> None:
    """Raise :class:`ProblemError` if ``need`` bytes exceed :func:`memory_budget`: ``what`` names the
    run, ``ways`` the alternatives that fit (both end up in the one-line message)."""
    budget = memory_budget()
    if need > budget:
        need_text, budget_text = _apart(need, budget)
        raise ProblemError(f"{what} needs about {need_text} of memory, more than the {budget_text} this "
                           f"machine allows ({int(100 * BUDGET_SHARE)} % of {gib(physical_memory())}); {ways}")
