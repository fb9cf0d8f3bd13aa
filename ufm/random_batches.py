"""The random batching schemes drawn in JAX, one epoch at a time, at a fixed shape.

Epoch e of a problem with seed s draws from the key ``fold_in(PRNGKey(s), e)``
(:func:`epoch_key`), so gradient descent draws each epoch inside its compiled loop in O(one epoch)
memory, and :meth:`ufm.batching.Batching.batches` (which calls the same function eagerly) returns the
very batches a solve used. Every epoch of a scheme has the same shape (groups, width), fixed by
(scheme, counts, batch size) alone (:func:`draw_shape`); ``valid`` marks the entries in use.

With n examples numbered class by class (class c holds [start_c, start_c + n_c)) and batch size B:

- ``random``: a permutation of 0..n-1 cut into ceil(n / B) batches of B (the last may be smaller);
  shape (ceil(n / B), min(B, n)).
- ``balanced``: each class in random order, the classes one after another; the p-th example of that
  sequence goes to batch p mod m, m = ceil(n / B) (a round-robin deal that continues where the last
  class stopped, so batch sizes differ by at most one and each batch holds each class in proportion
  to its count); each batch sorted. Shape (m, ceil(n / m)).
- ``binding``: the first example of every class (the binding examples) joins every batch; the other
  n - k examples in random order are cut into chunks of c = min(B - k, n - k) (one batch of the k
  binding examples when n = k). Shape (max(1, ceil((n - k) / c)), k + c).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm.programs import program
from ufm.batching import draw_shape  # noqa: F401  (the shape of every epoch; defined with the schemes)


def epoch_key(seed: int, epoch: int | jax.Array) -> jax.Array:
    """The key of one epoch: ``fold_in(PRNGKey(seed), epoch)`` (a raw uint32 (2,) key)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), epoch)


def _starts(counts: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)


def draw(scheme: str, counts: tuple[int, ...], batch_size: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One epoch of a random scheme: ``(index, valid)``, int32 and bool arrays of shape
    :func:`draw_shape`; index entries where ``valid`` is False are 0. Traceable (``key`` may be a
    traced epoch key); ``scheme``, ``counts`` and ``batch_size`` are static."""
    counts = tuple(int(c) for c in counts)
    n, k = sum(counts), len(counts)
    groups, width = draw_shape(scheme, counts, batch_size)
    if scheme == "random":
        flat = jax.random.permutation(key, n).astype(jnp.int32)
        valid = np.arange(groups * width) < n
        flat = jnp.zeros(groups * width, jnp.int32).at[:n].set(flat)
        return flat.reshape(groups, width), jnp.asarray(valid.reshape(groups, width))
    if scheme == "balanced":
        labels = np.repeat(np.arange(k), counts)
        # class-grouped random order: a random permutation, then stably sorted by class
        perm = jax.random.permutation(key, n)
        order = perm[jnp.argsort(jnp.asarray(labels)[perm], stable=True)].astype(jnp.int32)
        position = np.arange(n, dtype=np.int32)
        batch_of = jnp.zeros(n, jnp.int32).at[order].set(jnp.asarray(position % groups, jnp.int32))
        # each batch sorted: order the examples by (batch, example)
        by_batch = jnp.argsort(batch_of * n + position).astype(jnp.int32)
        sizes = (n - np.arange(groups) + groups - 1) // groups        # ceil((n - b) / groups)
        row_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        batch_sorted = np.repeat(np.arange(groups), sizes)           # batch of the q-th sorted entry
        column = position - row_start[batch_sorted]
        index = jnp.zeros((groups, width), jnp.int32).at[batch_sorted, column].set(by_batch)
        valid = np.zeros((groups, width), dtype=bool)
        valid[batch_sorted, column] = True
        return index, jnp.asarray(valid)
    # binding
    binding = _starts(counts)
    if n == k:
        return jnp.asarray(binding[None]), jnp.ones((1, k), dtype=bool)
    rest = np.setdiff1d(np.arange(n), binding).astype(np.int32)
    chunk = width - k
    shuffled = jnp.asarray(rest)[jax.random.permutation(key, n - k)]
    flat = jnp.zeros(groups * chunk, jnp.int32).at[:n - k].set(shuffled).reshape(groups, chunk)
    index = jnp.concatenate([jnp.broadcast_to(jnp.asarray(binding), (groups, k)), flat], axis=1)
    valid = np.concatenate([np.ones((groups, k), dtype=bool),
                            (np.arange(groups * chunk) < n - k).reshape(groups, chunk)], axis=1)
    return index, jnp.asarray(valid)


def raw_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` as NumPy (threefry: the seed's high and low 32-bit words), made
    without a JAX call (tests/test_batching.py holds it against JAX)."""
    seed = int(seed)
    return np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)


def _draw(seed, epoch, *, scheme: str, counts: tuple[int, ...], batch_size: int):
    return draw(scheme, counts, batch_size, jax.random.fold_in(jax.random.PRNGKey(seed), epoch))


#: One epoch's draw, compiled per (scheme, counts, batch size) and kept across processes.
_DRAW = program(_draw, static_argnames=("scheme", "counts", "batch_size"), cost=lambda *a, **k: 0)


def epoch_batches(scheme: str, counts: Sequence[int], batch_size: int, seed: int,
                  epoch: int) -> list[np.ndarray]:
    """Epoch ``epoch`` of a random scheme as a list of index arrays (the padding removed)."""
    index, valid = _DRAW(np.int64(seed), np.int64(epoch), scheme=scheme, counts=tuple(int(c) for c in counts),
                         batch_size=int(batch_size))
    index, valid = np.asarray(index), np.asarray(valid)
    return [row[mask].astype(np.int64) for row, mask in zip(index, valid) if mask.any()]
