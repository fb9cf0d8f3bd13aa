"""Scaling out over several devices with JAX sharding (``jax.shard_map``): the meshes and the padding
of runs.

Two ways, both exact (the same arithmetic; only the order of the final sums changes):

- **rows** (one full-batch solve, ``gd.solve(devices=p)``): every device holds all rows, takes the
  anchors of its own block of ceil(n / p) rows, and the devices' log-excesses and gradients combine as
  one log-sum-exp (``ufm.objectives.scl.precise._evaluate_sharded``): memory and work per device / p;
- **runs** (``gd.solve_many`` starts, ``gd.solve_batched`` sweeps, ``devices=p``): the leading axis of
  the stacked runs is split over the devices; each device runs its share with its own stopping tests,
  no communication. The runs are padded to a multiple of p with copies of the last one, dropped after.

On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX starts) gives four
host devices: the tests run the sharded paths that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import jax
import numpy as np

from ufm.errors import ProblemError, whole_number

if TYPE_CHECKING:
    from typing import TypeVar

    #: Stacked runs: a NamedTuple of arrays, one field per quantity.
    Runs = TypeVar("Runs", bound=tuple)
    #: Any pytree of arrays.
    Tree = TypeVar("Tree")

ROWS = "rows"
RUNS = "runs"


def device_mesh(devices: int | None, axis: str) -> jax.sharding.Mesh | None:
    """A one-axis mesh of the first ``devices`` devices (None or 1: no mesh, one device)."""
    if devices is None:
        return None
    available = jax.device_count()
    devices = whole_number(devices, "devices", 1)
    if devices > available:
        raise ProblemError(f"devices = {devices} but JAX sees {available}: use at most {available} (on a "
                           f"CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N gives N host devices)")
    if devices == 1:
        return None
    return jax.sharding.Mesh(np.asarray(jax.devices()[:devices]), (axis,))


def shard_runs(fn: Callable, mesh: jax.sharding.Mesh, run_axes: tuple) -> Callable:
    """``fn`` (stacked runs -> stacked results, leading axis) with the runs split over ``mesh``:
    ``run_axes`` gives per top-level field of its one argument 0 (stacked) or None (shared)."""
    P = jax.sharding.PartitionSpec
    spec = lambda axis: P(RUNS) if axis == 0 else P()  # noqa: E731

    def sharded(data):
        in_specs = type(data)(*(spec(a) for a in run_axes))
        return jax.shard_map(fn, mesh=mesh, in_specs=(in_specs,), out_specs=P(RUNS), check_vma=False)(data)
    return sharded


def pad_runs(data: Runs, run_axes: tuple, devices: int) -> tuple[Runs, int]:
    """Stacked fields padded along axis 0 to a multiple of ``devices`` with copies of the last run.
    Returns (padded data, the number of real runs)."""
    count = next(np.shape(x)[0] for x, a in zip(data, run_axes) if a == 0)
    extra = -count % devices
    if not extra:
        return data, count

    def pad(x, axis):
        if axis != 0:
            return x
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])
    return type(data)(*(pad(x, a) for x, a in zip(data, run_axes))), count


def unpad_runs(tree: Tree, count: int) -> Tree:
    """The first ``count`` runs of every leaf."""
    return jax.tree_util.tree_map(lambda x: x[:count], tree)
