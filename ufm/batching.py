"""Batching schemes, packing for JAX, and the batching conditions of docs/theory.md section 4.

A *batching* is a list of 1-D integer index arrays (one per batch, batches may overlap). Examples are
numbered class by class in count order (``labels = [0]*n_0 + [1]*n_1 + ...``).

Schemes (:class:`Batching`):

- ``full``: one batch holding all n examples.
- ``random``: a random permutation cut into batches of ``batch_size`` (the last may be smaller).
- ``balanced``: class-stratified: every class is shuffled and dealt round-robin over the
  ``ceil(n / batch_size)`` batches, so each batch holds each class in proportion to its count.
- ``binding``: batch-binding [OF]: one example of every class (the *binding examples*, the first of
  each class) joins every batch; the remaining examples are shuffled and cut into chunks of
  ``batch_size - k``, so every batch has ``batch_size`` examples (the last may be smaller).
- ``explicit``: a fixed list of batches given by the user.

Random schemes draw in JAX from the key ``fold_in(PRNGKey(seed), epoch)`` (:mod:`ufm.random_batches`,
which gradient descent also calls inside its loop): the same seed and epoch give the same batches; a
new epoch reshuffles.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from ufm.errors import ProblemError, whole_number

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

SCHEMES = ("full", "random", "balanced", "binding", "explicit")
#: The schemes that reshuffle every epoch (drawn in JAX by :mod:`ufm.random_batches`, imported only
#: when a batch is drawn: describing a batching loads no JAX).
RANDOM_SCHEMES = ("random", "balanced", "binding")


def draw_shape(scheme: str, counts: Sequence[int], batch_size: int) -> tuple[int, int]:
    """(groups, width) of every epoch of a random scheme (:mod:`ufm.random_batches`)."""
    n, k, bs = int(sum(counts)), len(counts), int(batch_size)
    if scheme == "random":
        return math.ceil(n / bs), min(bs, n)
    if scheme == "balanced":
        groups = math.ceil(n / bs)
        return groups, math.ceil(n / groups)
    if scheme == "binding":
        if n == k:
            return 1, k
        chunk = min(bs - k, n - k)
        return math.ceil((n - k) / chunk), k + chunk
    raise ValueError(f"{scheme!r} is not a random scheme; use one of {', '.join(RANDOM_SCHEMES)}")


@dataclass(frozen=True)
class Batching:
    """How examples are grouped into batches.

    ``scheme`` is one of :data:`SCHEMES`; ``batch_size`` is needed by ``random``, ``balanced`` and
    ``binding``; ``explicit`` holds the batches (tuple of tuples of example indices) of the
    ``explicit`` scheme.
    """

    scheme: str = "full"
    batch_size: int | None = None
    explicit: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)

    @staticmethod
    def full() -> "Batching":
        return Batching("full")

    @staticmethod
    def random(batch_size: int) -> "Batching":
        return Batching("random", batch_size=whole_number(batch_size, "batch size"))

    @staticmethod
    def balanced(batch_size: int) -> "Batching":
        return Batching("balanced", batch_size=whole_number(batch_size, "batch size"))

    @staticmethod
    def binding(batch_size: int) -> "Batching":
        return Batching("binding", batch_size=whole_number(batch_size, "batch size"))

    @staticmethod
    def from_lists(batches: Sequence[Sequence[int]]) -> "Batching":
        """An explicit batching; every index must be an integer (floats such as 2.0 are refused)."""
        if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__"):
            raise ProblemError(f"batches must be a list of lists of example indices (got {batches!r})")
        out = []
        for b, batch in enumerate(batches):
            if isinstance(batch, (str, bytes)) or not hasattr(batch, "__iter__"):
                raise ProblemError(f"batch {b} must be a list of example indices (got {batch!r})")
            out.append(tuple(whole_number(i, f"example index in batch {b}") for i in batch))
        return Batching("explicit", explicit=tuple(out))

    @staticmethod
    def from_file(path: str | Path, max_batches: int | None = None) -> "Batching":
        """Read a JSON list of lists of example indices. ``max_batches``: refuse a file with more batches
        (its lists counted in the text, before the JSON is parsed: parsing costs about 22 bytes of
        memory per byte of the file)."""
        path = Path(path)
        if path.is_dir():
            raise ProblemError(f"batches file {path} is a directory; give the JSON file inside it")
        try:
            text = path.read_text()
            listed = text.count("[") - 1
            if max_batches is not None and listed > max_batches:
                raise ProblemError(f"batches file {path} lists {listed} batches, more than {max_batches}; "
                                   "use larger batches")
            data = json.loads(text)
        except FileNotFoundError:
            raise ProblemError(f"batches file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ProblemError(f"batches file {path} cannot be read ({err.__class__.__name__}: "
                               f"{getattr(err, 'strerror', None) or err}); check the path and its "
                               "permissions") from None
        except json.JSONDecodeError as err:
            raise ProblemError(f"batches file {path} is not valid JSON ({err.msg}); "
                               "it must hold a list of lists of example indices") from None
        except RecursionError:
            raise ProblemError(f"batches file {path} nests its lists too deeply; it must hold a list of "
                               "lists of example indices") from None
        if not isinstance(data, list) or not all(isinstance(b, list) for b in data):
            raise ProblemError(f"batches file {path} must hold a list of lists of example indices")
        if not all(isinstance(i, int) and not isinstance(i, bool) for b in data for i in b):
            raise ProblemError(f"batches file {path} must hold integer example indices only")
        return Batching.from_lists(data)

    @property
    def is_random(self) -> bool:
        """Whether batches change with the epoch (reshuffled from the seed)."""
        return self.scheme in RANDOM_SCHEMES

    def validate(self, counts: Sequence[int]) -> None:
        """Raise :class:`ProblemError` if this batching does not fit these class counts."""
        n, k = int(sum(counts)), len(counts)
        if self.scheme not in SCHEMES:
            raise ProblemError(f"unknown batching scheme {self.scheme!r}; use one of {', '.join(SCHEMES)}")
        if self.scheme in ("full", "explicit") and self.batch_size is not None:
            raise ProblemError(f"a batch size does not apply to the {self.scheme} batching "
                               f"(got {self.batch_size}); drop it or use random, balanced or binding")
        if self.scheme in ("random", "balanced", "binding"):
            if self.batch_size is not None:
                whole_number(self.batch_size, "batch size")
            if self.batch_size is None or self.batch_size < 2:
                raise ProblemError(f"batching {self.scheme!r} needs a batch size of at least 2 "
                                   "(--batch-size B)")
            if self.batch_size >= n:
                raise ProblemError(f"a batch size of {self.batch_size} puts all n = {n} examples in one batch: "
                                   f"that is full batching; use a batch size below {n}, or --batching full")
            if self.scheme == "binding" and self.batch_size <= k:
                raise ProblemError(f"batch-binding puts one example of each of the {k} classes in every "
                                   f"batch, so the batch size must exceed k = {k} "
                                   f"(got {self.batch_size})")
        if self.scheme == "explicit":
            batches = self.explicit or ()
            if len(batches) == 0:
                raise ProblemError("the explicit batching holds no batch; give at least one list of "
                                   "example indices")
            for b, batch in enumerate(batches):
                for i in batch:
                    whole_number(i, f"example index in batch {b}")
                if len(batch) == 0:
                    raise ProblemError(f"batch {b} is empty; every batch needs at least one example")
                bad = [i for i in batch if i < 0 or i >= n]
                if bad:
                    raise ProblemError(f"batch {b} names example {bad[0]}, which does not exist: examples "
                                       f"are numbered 0..{n - 1} class by class in count order")
                if len(set(batch)) != len(batch):
                    raise ProblemError(f"batch {b} lists an example twice; list each example once per batch")
            covered = np.zeros(n, dtype=bool)
            for batch in batches:
                covered[list(batch)] = True
            if not covered.all():
                missing = np.flatnonzero(~covered)
                shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise ProblemError(f"the batching leaves example(s) {shown} out of every batch; "
                                   "every example must be in at least one batch")

    def batches(self, counts: Sequence[int], seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
        """The list of batches (index arrays) for this epoch."""
        counts = [int(c) for c in counts]
        if self.scheme == "full":
            return [np.arange(sum(counts))]
        if self.scheme == "explicit":
            return [np.asarray(b, dtype=np.int64) for b in self.explicit]
        from ufm.random_batches import epoch_batches

        return epoch_batches(self.scheme, counts, int(self.batch_size), seed, epoch)


class PackedBatches(NamedTuple):
    """A batching packed into padded arrays so one jitted loss serves every scheme.

    ``index``: int array (n_batches, width); rows of example indices, padded with 0.
    ``valid``: bool array (n_batches, width); False on padding.
    With prototypes, the loss appends the prototype rows to every batch itself.
    """

    index: np.ndarray
    valid: np.ndarray


def pack(batches: Sequence[np.ndarray], width: int | None = None) -> PackedBatches:
    """Pack a list of index arrays into (n_batches, width) index and mask arrays.

    ``width`` defaults to the largest batch; a larger fixed width lets every epoch of a random
    scheme share one compiled shape.
    """
    sizes = [len(b) for b in batches]
    width = max(sizes) if width is None else int(width)
    if width < max(sizes):
        raise ProblemError(f"pack width {width} is smaller than the largest batch ({max(sizes)})")
    index = np.zeros((len(batches), width), dtype=np.int32)
    valid = np.zeros((len(batches), width), dtype=bool)
    for r, b in enumerate(batches):
        index[r, :len(b)] = np.asarray(b)
        valid[r, :len(b)] = True
    return PackedBatches(index, valid)


@dataclass(frozen=True)
class BatchConditions:
    """What docs/theory.md section 4 guarantees for a batching under ReLU.

    ``neural_collapse``: condition 1 holds (every class's co-occurrence graph is connected).
    ``orthogonal_frame``: conditions 1 and 2 hold (and so every minimiser is NC + orthogonal frame).
    ``disconnected_classes``: classes whose graph (examples joined when they share a batch) is not
    connected, with the number of connected pieces.
    ``unmet_pairs``: class pairs (c, c') with no batch holding both in which one of the two has a
    positive.
    """

    neural_collapse: bool
    orthogonal_frame: bool
    disconnected_classes: tuple[tuple[int, int], ...]
    unmet_pairs: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict:
        return {
            "neural_collapse": self.neural_collapse,
            "orthogonal_frame": self.orthogonal_frame,
            "violations": {
                "disconnected_classes": [{"class": c, "components": p} for c, p in self.disconnected_classes],
                "unmet_pairs": [list(p) for p in self.unmet_pairs],
            },
        }


def _components(n_nodes: int, edges: list[tuple[int, int]]) -> int:
    parent = list(range(n_nodes))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return len({find(a) for a in range(n_nodes)})


def class_labels(labels: ArrayLike, k: int | None = None, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D int64 array of classes 0..k-1, or :class:`ProblemError`. Without ``k``, every
    class from 0 to the largest label must occur (so k <= n, and a stray huge label is caught)."""
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError):
        array = None
    if array is None or array.ndim != 1 or array.size == 0 or not (
            np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_)):
        raise ProblemError(f"{name} must be a non-empty 1-D list of integer class indices (got {labels!r})")
    array = array.astype(np.int64)
    top = k if k is not None else int(array.max()) + 1
    if array.min() < 0 or array.max() >= top:
        raise ProblemError(f"{name} must lie in 0..{top - 1} (got {array.min()}..{array.max()})")
    if k is None and len(np.unique(array)) != top:
        raise ProblemError(f"{name} must number the classes 0..k-1 with every class present "
                           f"(got {len(np.unique(array))} distinct labels up to {top - 1})")
    return array


def checked_batch(batch: Sequence[int], b: int, n: int) -> np.ndarray:
    """Batch ``b`` as an int array, or :class:`ProblemError` if it names an example twice or one
    outside 0..n-1 (a repeated index is not a positive pair)."""
    try:
        index = np.asarray(batch)
    except (ValueError, TypeError):
        index = None
    if index is None or index.ndim != 1 or (index.size and not (
            np.issubdtype(index.dtype, np.integer) and not np.issubdtype(index.dtype, np.bool_))):
        raise ProblemError(f"batch {b} must be a 1-D list of integer example indices")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= n):
        bad = index[(index < 0) | (index >= n)][0]
        raise ProblemError(f"batch {b} names example {bad}, which does not exist: examples are numbered "
                           f"0..{n - 1}")
    if len(np.unique(index)) != len(index):
        raise ProblemError(f"batch {b} lists an example twice; list each example once per batch")
    return index


def check_conditions(labels: Sequence[int], batches: Sequence[Sequence[int]],
                     prototype_labels: Sequence[int] | None = None) -> BatchConditions:
    """Check the two conditions of docs/theory.md section 4 for ``labels`` (n,) and a list of batches.

    1. for every class, the graph on its examples with an edge between two examples sharing a batch
       is connected;
    2. every pair of classes shares a batch in which at least one of the two has a positive
       (at least two members of that class in the batch).

    Prototypes (fixed labelled rows in every batch) are counted as members of every batch: a class
    with a prototype is then connected through it, as [PROTO] describes.
    """
    labels = class_labels(labels)
    k = int(labels.max()) + 1
    proto = class_labels(prototype_labels, k, "prototype labels") if prototype_labels is not None else \
        np.zeros(0, dtype=np.int64)
    n = len(labels)
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__"):
        raise ProblemError(f"batches must be a list of lists of example indices (got {batches!r})")
    batches = [checked_batch(batch, b, n) for b, batch in enumerate(batches)]
    node_labels = np.concatenate([labels, proto])
    proto_nodes = np.arange(n, n + len(proto))

    met = np.zeros((k, k), dtype=bool)
    edges: dict[int, list[tuple[int, int]]] = {c: [] for c in range(k)}
    for batch in batches:
        members = np.concatenate([np.asarray(batch, dtype=int), proto_nodes])
        member_labels = node_labels[members]
        per_class = np.bincount(member_labels, minlength=k)
        for c in np.flatnonzero(per_class >= 2):
            nodes = members[member_labels == c]
            # a star joins all members of this class in this batch
            edges[int(c)].extend((int(nodes[0]), int(x)) for x in nodes[1:])
        present = per_class >= 1
        has_positive = per_class >= 2
        met |= np.outer(present, present) & (has_positive[:, None] | has_positive[None, :])

    disconnected = []
    for c in range(k):
        nodes = np.flatnonzero(node_labels == c)
        local = {int(v): i for i, v in enumerate(nodes)}
        pieces = _components(len(nodes), [(local[a], local[b]) for a, b in edges[c]])
        if pieces > 1:
            disconnected.append((c, pieces))
    unmet = [(a, b) for a in range(k) for b in range(a + 1, k) if not met[a, b]]
    nc = not disconnected
    return BatchConditions(nc, nc and not unmet, tuple(disconnected), tuple(unmet))
