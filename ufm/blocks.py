"""How the kernels cut a batch into blocks of anchors, in plain arithmetic on sizes (no JAX): the
precise kernel (:mod:`ufm.objectives.scl.precise`), the plain one (:mod:`ufm.objectives.scl.plain`) and the memory checks
(:mod:`solvers.sizing`) share these rules, and the checks run before JAX is loaded.

:func:`backend` says which platform JAX runs on (``"cpu"``, ``"gpu"``, ``"tpu"``): JAX's own word where
it is loaded; before that, what it will pick (``JAX_PLATFORMS``, then an installed accelerator plugin),
so that a check made before loading JAX sizes the blocks that the run will use.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Callable


def backend() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: ``jax.default_backend()`` where JAX is loaded; before, the
    first of ``JAX_PLATFORMS`` (``cuda``/``rocm`` count as ``"gpu"``), else ``"gpu"`` or ``"tpu"`` when
    such a plugin is installed (JAX prefers it), else ``"cpu"``."""
    if "jax" in sys.modules:
        return sys.modules["jax"].default_backend()
    first = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
    if first:
        return "gpu" if first in ("cuda", "rocm", "gpu") else first
    if importlib.util.find_spec("libtpu") is not None:
        return "tpu"
    try:
        plugins = importlib.util.find_spec("jax_plugins")
    except (ImportError, ValueError):
        plugins = None
    if plugins is not None and plugins.submodule_search_locations:
        for location in plugins.submodule_search_locations:
            if os.path.isdir(location) and any(name.startswith(("xla_cuda", "xla_rocm"))
                                               for name in os.listdir(location)):
                return "gpu"
    return "cpu"


#: The precise kernel (:mod:`ufm.objectives.scl.precise`): on a CPU it works in blocks of anchors even without a
#: ``chunk_size``: a block's (c, m) intermediates stay in cache instead of being written to fresh
#: memory. Blocks are sized so that c * m * itemsize ~ PRECISE_BLOCK_BYTES, with at least
#: PRECISE_MIN_BLOCK_BYTES / itemsize rows (32 float64, 64 float32: fewer rows make the products
#: inefficient) and at most a quarter of the batch (the positives' window grows with c). Measured on
#: 2 cores, k = d = 10, loss + gradient, float64: n = 1000 blocks of 100 / 200 / 262 / 524 / 1000:
#: 5.6 / 5.5 / 5.8 / 7.7 / 25 ms (250, the default); n = 5000 blocks of 52 / 78 / 104 / 156: 116 /
#: 117 / 100 / 105 ms (104); n = 20000 blocks of 32 / 64: 2.00 / 1.95 s (32). float32 n = 5000 blocks
#: of 64 / 128 / 256: 66 / 68 / 56 ms (209). On a GPU the default is one block (its parallelism wants
#: the whole matrix).
PRECISE_BLOCK_BYTES = 4 * 2 ** 20
PRECISE_MIN_BLOCK_BYTES = 256


def precise_default_block(width: int, itemsize: int) -> int:
    """Anchors per block of the precise kernel when no chunk size is given (PRECISE_BLOCK_BYTES)."""
    if backend() != "cpu":
        return width
    by_bytes = min(PRECISE_BLOCK_BYTES // max(width * itemsize, 1), max(width // 4, 1))
    return max(PRECISE_MIN_BLOCK_BYTES // itemsize, by_bytes)


def class_rows_bucket(rows: int) -> int:
    """``class_rows`` for the kernel from a batch's most rows of one class: the next power of two, so
    problems of equal shape whose counts differ a little share one compiled program."""
    return 1 << max(int(rows) - 1, 0).bit_length()


#: The plain kernel (:mod:`ufm.objectives.scl.plain`): anchors per block when no chunk size is given (on a CPU):
#: c * m * itemsize ~ PLAIN_BLOCK_BYTES, at least PLAIN_MIN_BLOCK_BYTES / itemsize rows, at most half
#: the batch (a batch of fewer than twice that many rows: one block). No window here, so blocks are
#: larger than the precise kernel's. Measured on 2 cores (Intel Xeon), k = d = 10, value + gradient, against the
#: benchmark's floor in the same run: float64 n = 1000 blocks of 250 / 500 / 1000: 1.68 / 1.35 / 1.86x
#: (500, the default); n = 5000 blocks of 262 / 524 / 800: 1.30 / 1.18 / 1.47x (524); n = 20000 blocks
#: of 64 / 128 / 256: 1.43 / 1.18 / 1.07x (131); float32 n = 5000 blocks of 524 / 1048 / 2048: 1.15 /
#: 1.10 / 1.92x (1048); n = 20000 blocks of 128 / 256 / 512: 1.21 / 1.14 / 1.19x (262). At n = 20000
#: in float64 256 rows (40 MB) measured better, but a 40 MB budget would pick 1048 rows at n = 5000
#: (800 there: 1.47x); 20 MB is the one budget that is near the best at every size measured.
#: One budget per batch: a deterministic batching of several wide batches holds one block per batch
#: (vmapped), which ``solvers.sizing`` counts.
#: The floor of PLAIN_MIN_BLOCK_BYTES / itemsize rows (128 in float64) holds while a block's logits
#: stay within PLAIN_MAX_BLOCK_BYTES (n <= 65536 in float64); beyond, the precise kernel's rule (32
#: rows), so a huge batch needs no more memory than there. On a GPU one block (the whole batch).
PLAIN_BLOCK_BYTES = 20 * 2 ** 20
PLAIN_MIN_BLOCK_BYTES = 1024
PLAIN_MAX_BLOCK_BYTES = 64 * 2 ** 20


def plain_default_block(width: int, itemsize: int) -> int:
    """Anchors per block of the plain kernel for a batch of ``width`` rows when no chunk size is given
    (PLAIN_BLOCK_BYTES)."""
    if backend() != "cpu":
        return width
    row_bytes = max(width * itemsize, 1)
    half, least = -(-width // 2), PLAIN_MIN_BLOCK_BYTES // itemsize
    if half < least:                     # a small batch: one block (two would be mostly padding)
        return width
    rows = max(min(PLAIN_BLOCK_BYTES // row_bytes, half), least)
    return rows if rows * row_bytes <= PLAIN_MAX_BLOCK_BYTES else precise_default_block(width, itemsize)


def block_size(rows: int, chunk_size: int | None, width: int, itemsize: int,
               default: Callable[[int, int], int] | None = None) -> int:
    """Anchors per block (c) of ``rows`` anchors against a batch of ``width`` rows (``default``: the
    rule without a chunk size, :func:`precise_default_block` unless given)."""
    c = (default or precise_default_block)(width, itemsize) if chunk_size is None else int(chunk_size)
    return max(1, min(c, rows))
