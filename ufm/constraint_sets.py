"""The constraint sets of the UFM (docs/theory.md section 1), each written once for NumPy and JAX.

One row per example, H (n, d):

- :data:`SPHERE`               S   = { H : ||h_i|| = 1 for every i }                (SCL, no ReLU)
- :data:`NONNEGATIVE_SPHERE`   S_+ = { H : ||h_i|| = 1 and h_i >= 0 }              (SCL, ReLU)
- :data:`EUCLIDEAN`            R^(n x d), or any pytree of arrays                   (CE, learned classifier)

Each set supplies, in the manner of pymanopt's manifolds (separate from any optimiser):

- ``tangent(H, G)``: the projection of a Euclidean gradient G on the tangent space at H
  (sphere: ``g_i = G_i - <G_i, h_i> h_i``);
- ``direction(H, G)``: the descent direction of a first-order method, ``-direction`` being the
  projection of ``-G`` onto the tangent *cone* (for S_+: the tangent projection on the free
  coordinates h_ij > 0 and ``min(G_ij, 0)`` on the active ones); ``||direction||_F`` is 0 exactly at a
  KKT point, so it is the stationarity measure;
- ``retract(V)``: a map back onto the set (rows normalised; for S_+ clipped at 0 first, and a row with
  no positive entry becomes the unit vector of its largest coordinate instead of 0/0);
- ``point(X)``: a random point from a standard Gaussian draw X (``random_point`` draws it with a
  ``jax.random`` key, in one compiled program per set, row bucket, width and dtype (:func:`random_point`);
  ``random_point_np`` with a NumPy generator);
- ``violation(H)``: how far H is from the set (0 on it).

The functions take NumPy arrays or JAX arrays (tracers included) and answer in the same kind: the
array module is chosen from the input (:func:`array_module`), so there is one implementation per set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ufm.programs import bucket, program

if TYPE_CHECKING:
    from types import ModuleType
    from typing import TypeVar

    from numpy.typing import DTypeLike

    #: What the maps take and give: a NumPy or a JAX array (tracers included).
    Array = np.ndarray | jax.Array
    #: Any pytree of arrays (the Euclidean set's maps are the identity on it).
    T = TypeVar("T")


def array_module(a: object) -> ModuleType:
    """``numpy`` for NumPy arrays (and Python numbers), ``jax.numpy`` for JAX arrays and tracers."""
    return np if isinstance(a, (np.ndarray, np.generic, float, int)) else jnp


class ConstraintSet(Protocol):
    """What a constraint set supplies (module docstring); arrays are NumPy or JAX alike."""

    name: str

    def tangent(self, H: Array, G: Array) -> Array: ...

    def direction(self, H: Array, G: Array) -> Array: ...

    def retract(self, V: Array) -> Array: ...

    def point(self, X: Array) -> Array: ...

    def violation(self, H: Array) -> float | jax.Array: ...

    def random_point(self, key: jax.Array, shape: tuple[int, int], dtype: DTypeLike = jnp.float64) -> np.ndarray: ...

    def random_point_np(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray: ...


class Sphere:
    """S: unit rows."""

    name = "sphere"

    def tangent(self, H: Array, G: Array) -> Array:
        xp = array_module(H)
        return G - xp.sum(G * H, axis=1, keepdims=True) * H

    def direction(self, H: Array, G: Array) -> Array:
        return self.tangent(H, G)

    def retract(self, V: Array) -> Array:
        xp = array_module(V)
        with np.errstate(invalid="ignore", divide="ignore"):   # non-finite rows stay non-finite
            return V / xp.linalg.norm(V, axis=1, keepdims=True)

    def point(self, X: Array) -> Array:
        return self.retract(X)

    def violation(self, H: Array) -> float | jax.Array:
        xp = array_module(H)
        return xp.max(xp.abs(xp.linalg.norm(H, axis=1) - 1.0))

    def random_point(self, key: jax.Array, shape: tuple[int, int], dtype: DTypeLike = jnp.float64) -> np.ndarray:
        return random_point(self, key, shape, dtype)

    def random_point_np(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return self.point(rng.standard_normal(shape))


class NonnegativeSphere(Sphere):
    """S_+: unit, nonnegative rows."""

    name = "nonnegative-sphere"

    def direction(self, H: Array, G: Array) -> Array:
        xp = array_module(H)
        return xp.where(H > 0, self.tangent(H, G), xp.minimum(G, 0.0))

    def retract(self, V: Array) -> Array:
        xp = array_module(V)
        clipped = xp.maximum(V, 0.0)
        dead = xp.all(clipped <= 0.0, axis=1, keepdims=True)
        largest = xp.eye(V.shape[1], dtype=V.dtype)[xp.argmax(V, axis=1)]
        return super().retract(xp.where(dead, largest, clipped))

    def point(self, X: Array) -> Array:
        return self.retract(array_module(X).abs(X))

    def violation(self, H: Array) -> float | jax.Array:
        xp = array_module(H)
        return xp.maximum(super().violation(H), xp.maximum(-xp.min(H), 0.0))


class Euclidean:
    """The whole space (any pytree of arrays): every map is the identity."""

    name = "euclidean"

    def tangent(self, H: object, G: T) -> T:
        return G

    def direction(self, H: object, G: T) -> T:
        return G

    def retract(self, V: T) -> T:
        return V

    def point(self, X: T) -> T:
        return X

    def violation(self, H: object) -> float:
        return 0.0

    def random_point(self, key: jax.Array, shape: tuple[int, int], dtype: DTypeLike = jnp.float64) -> np.ndarray:
        return random_point(self, key, shape, dtype)

    def random_point_np(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return rng.standard_normal(shape)


SPHERE = Sphere()
NONNEGATIVE_SPHERE = NonnegativeSphere()
EUCLIDEAN = Euclidean()

#: The registry: a new constraint set is one class above plus one entry here.
CONSTRAINT_SETS: dict[str, ConstraintSet] = {s.name: s for s in (SPHERE, NONNEGATIVE_SPHERE, EUCLIDEAN)}


def _gaussian(key, *, size: int, dtype: str):
    return jax.random.normal(key, (size,), dtype=dtype)


#: The draw's work for ufm.programs' choice of compile options: about 16 units per entry (threefry and
#: the Gaussian transform), so draws of at most 4096 entries get the fast compile and larger ones the
#: full optimisation. Measured on 2 cores: 16384 entries (n = 1000, d = 10) take 2.3 ms fast-compiled
#: and 0.5 ms fully optimised, 0.14 s more to compile (once per machine: the compile cache); the
#: fully optimised draw equals jax.random.normal's bit for bit, the fast one to ~1e-15.
GAUSSIAN_COST_PER_ENTRY = 16
_GAUSSIAN = program(_gaussian, static_argnames=("size", "dtype"),
                    cost=lambda key, size, dtype: GAUSSIAN_COST_PER_ENTRY * size)


def random_point(constraint_set: ConstraintSet, key: jax.Array, shape: tuple[int, int],
                 dtype: DTypeLike = jnp.float64) -> np.ndarray:
    """``constraint_set.point`` (in NumPy) of the standard Gaussian (rows, d) draw
    ``jax.random.normal(key, (rows, d), dtype)``. The draw is made as one flat vector of rows * d
    entries rounded up to a power of two (at least 256), cut and reshaped: with JAX's partitionable
    threefry (its default) each entry depends on the key and its flat position alone, so the entries
    are the same (bit for bit where the draw is fully optimised, above 4096 entries; to ~1e-15 in the
    fast compile below: GAUSSIAN_COST_PER_ENTRY), and problems of every shape share a few compiled
    programs."""
    rows, d = (int(x) for x in shape)
    size = rows * d
    drawn = bucket(size, 256) if jax.config.jax_threefry_partitionable else size
    X = np.asarray(_GAUSSIAN(np.asarray(key), size=drawn, dtype=np.dtype(dtype).name))[:size].reshape(rows, d)
    return constraint_set.point(X)


def unit_sphere(relu: bool) -> Sphere:
    """The embeddings' set of an SCL (or fixed-classifier CE) problem: S_+ with ReLU, else S."""
    return NONNEGATIVE_SPHERE if relu else SPHERE
