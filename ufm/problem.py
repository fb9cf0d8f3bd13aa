"""The UFM problem (docs/theory.md sections 1, 2, 4, 5): class counts, temperature, constraints, batching,
prototypes, seed. Validation happens here, once, with messages that name the problem and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple, Sequence

import numpy as np

from ufm.batching import Batching, draw_shape
from ufm.errors import ProblemError, finite_number, whole_number
from ufm.geometry import etf_gram, factor_gram, orthogonal_frame_gram
from ufm.objectives import OBJECTIVES, default_objective
from ufm.objectives.base import ObjectiveOptions

#: The loss of a problem built without one: SCL (``ufm.objectives.DEFAULT_OBJECTIVE``).
DEFAULT_OBJECTIVE = default_objective()

PROTOTYPE_KINDS = ("etf", "of")

#: The temperatures the toolkit accepts. Below 1e-3 the certificate's gradient of log E loses its
#: finite range and the excess form is tested (against mpmath) only down to 1e-3; the tau -> 0 limit
#: itself is a prediction (``ufm predict``: the simplex ETF for d >= k-1). Above 100 the geometry moves
#: the excess by less than about 1/tau of itself (E tends to a geometry-free constant as tau grows), so a
#: relative gap of 1e-6 on E would no longer prove the geometry (at tau = 1e6 a random start passed).
TAU_MIN, TAU_MAX = 1e-3, 100.0
#: Seeds feed ``numpy.random.default_rng`` and ``jax.random.PRNGKey`` (32-bit keys).
SEED_MAX = 2 ** 32 - 1


@dataclass(frozen=True)
class ProblemShape:
    """What fixes the structure of an objective's compiled programs: n examples, k classes, the
    dimension, ReLU and the objective's options. Problems that differ only in tau, the counts (same n
    and k) or the seed share it, so a sweep over them compiles once; their numbers travel in
    :class:`ProblemArrays`, traced."""

    n: int
    k: int
    dim: int
    relu: bool
    objective: ObjectiveOptions


class ProblemArrays(NamedTuple):
    """A problem's numbers as arrays, built once (:meth:`Problem.arrays`) and passed as an argument to
    compiled functions: ``labels`` (n,) int32, class by class; ``counts`` (k,) int32; ``tau`` () float64."""

    labels: np.ndarray
    counts: np.ndarray
    tau: np.ndarray


@dataclass(frozen=True)
class Prototypes:
    """Fixed unit-norm prototypes w_{c,m} (docs/theory.md section 5), ``per_class`` identical copies per class.

    ``kind``: ``"etf"`` (simplex-ETF directions) or ``"of"`` (orthonormal, nonnegative: the standard
    basis). ``anchors``: whether prototypes are also anchors ((P-b), the default: what concatenating
    them to a batch does) or only positives/negatives ((P-a)).
    """

    kind: str = "etf"
    per_class: int = 1
    anchors: bool = True

    def vectors(self, k: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(W, labels)``: W (k * per_class, dim) unit rows, class by class; labels (k * per_class,)."""
        gram = etf_gram(k) if self.kind == "etf" else orthogonal_frame_gram(k)
        base = factor_gram(gram, dim) if self.kind == "etf" else np.eye(k, dim)
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        W = np.repeat(base, self.per_class, axis=0)
        return W, np.repeat(np.arange(k), self.per_class)


def require_problem(problem: object, who: str) -> None:
    """:class:`ProblemError` unless ``problem`` is a :class:`Problem` (``who``: the function's name)."""
    if not isinstance(problem, Problem):
        raise ProblemError(f"{who} needs a ufm.Problem (got {type(problem).__name__}); build one with "
                           "ufm.Problem.from_counts([...], tau=...)")


def _check_objective(objective) -> None:
    """:class:`ProblemError` unless ``objective`` is the options of a registered loss."""
    name = getattr(objective, "name", None)
    if not isinstance(name, str) or name not in OBJECTIVES or \
            not isinstance(objective, OBJECTIVES.options(name)):
        raise ProblemError(f"objective must be the options of a registered loss ({', '.join(OBJECTIVES)}), "
                           f"such as ufm.SCL() or ufm.CrossEntropy('etf') (got {objective!r})")


def uses_tau(objective: ObjectiveOptions) -> bool:
    """Whether the loss has a temperature (the learned-classifier CE has none; an options class says so
    with ``uses_tau = False``)."""
    return bool(getattr(objective, "uses_tau", True))


def _plain_fields(values: dict) -> dict:
    """``values`` with those of ``relu``, ``dim``, ``tau`` and ``seed`` it holds checked, in that order,
    and turned into Python's bool, int, float and int (a NumPy scalar given stays JSON-serialisable);
    a ``dim`` or ``tau`` of None is left as None (a default, or the learned classifier's no tau)."""
    out = dict(values)
    if "relu" in out:
        if not isinstance(out["relu"], (bool, np.bool_)):
            raise ProblemError(f"relu must be True or False (got {out['relu']!r})")
        out["relu"] = bool(out["relu"])
    if out.get("dim") is not None:
        out["dim"] = whole_number(out["dim"], "embedding dimension dim", 1)
    if out.get("tau") is not None:
        out["tau"] = finite_number(out["tau"], "temperature tau")
    if "seed" in out:
        out["seed"] = whole_number(out["seed"], "seed", 0, SEED_MAX)
    return out


def _as_counts(counts: Sequence) -> tuple[int, ...]:
    """Counts as a tuple of ints: integers, or floats with an integer value; strings and bools refused."""
    if isinstance(counts, (str, bytes, set, frozenset, dict)) or not hasattr(counts, "__iter__") \
            or (isinstance(counts, np.ndarray) and counts.ndim != 1):
        raise ProblemError(f"counts must be a sequence of class counts in class order, such as [8, 8, 2, 2] "
                           f"(got {counts!r})")
    out = []
    for c in counts:
        whole = (isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, (bool, np.bool_))
                 and math.isfinite(c) and float(c).is_integer())
        if not whole:
            raise ProblemError(f"class count {c!r} is not an integer; counts are numbers of examples")
        out.append(int(c))
    return tuple(out)


IMBALANCE_PROFILES = ("balanced", "step", "long-tail")


def profile_counts(imbalance: str, k: int, n_max: int, ratio: float = 1.0, minority_fraction: float | None = None,
                   *, rounded: bool = False) -> list[int]:
    """Class counts of an imbalance profile (docs/theory.md section 2), the one definition of each:

    - ``"balanced"``: ``[n_max] * k`` (ratio 1);
    - ``"step"``: ``k_min = round(minority_fraction * k)`` (default fraction 0.5) minority classes of ``n_min`` examples after
      ``k - k_min`` majority classes of ``n_max``;
    - ``"long-tail"``: ``n_c = round(n_max * ratio^(-c/(k-1)))`` for c = 1..k-2 between ``n_max`` and
      ``n_min``.

    ``n_min = n_max / ratio`` must be a whole number of at least 2 examples, so the counts have exactly
    the ratio asked for (:class:`ProblemError` otherwise). ``rounded=True`` instead takes
    ``n_min = max(2, round(n_max / ratio))``: for a continuous slider (the explorer), which shows the
    counts it used.
    """
    if imbalance not in IMBALANCE_PROFILES:
        raise ProblemError(f"unknown imbalance profile {imbalance!r}; use one of {', '.join(IMBALANCE_PROFILES)}")
    if imbalance != "step" and minority_fraction is not None:
        raise ProblemError(f"a minority fraction applies to the step profile only (got {imbalance!r})")
    k = whole_number(k, "number of classes k", 2)
    n_max = whole_number(n_max, "n_max (examples in the largest class)", 2)
    ratio = finite_number(ratio, "imbalance ratio")
    if ratio < 1:
        raise ProblemError(f"imbalance ratio must be >= 1 (got {ratio:g}); R = n_max / n_min")
    if imbalance == "balanced":
        if ratio != 1:
            raise ProblemError(f"a balanced problem has ratio 1 (got {ratio:g}); use step or long-tail")
        return [n_max] * k
    exact = n_max / ratio
    n_min = int(round(exact))
    if rounded:
        n_min = max(2, n_min)
    elif abs(exact - n_min) > 1e-9 * max(1.0, exact):
        raise ProblemError(f"n_max / ratio = {n_max}/{ratio:g} = {exact:g} is not a whole number of "
                           "examples; choose n_max divisible by the ratio")
    elif n_min < 2:
        raise ProblemError(f"n_max / ratio = {n_max}/{ratio:g} leaves {n_min} example(s) in the smallest "
                           "class, which needs at least 2; raise n_max or lower the ratio")
    if imbalance == "step":
        minority_fraction = finite_number(0.5 if minority_fraction is None else minority_fraction,
                                          "minority fraction")
        if not 0 < minority_fraction < 1:
            raise ProblemError(f"minority fraction must lie strictly between 0 and 1 (got {minority_fraction:g})")
        k_min = int(round(minority_fraction * k))
        if not 1 <= k_min <= k - 1:
            raise ProblemError(f"minority fraction {minority_fraction:g} with k = {k} leaves no majority or "
                               "no minority class")
        return [n_max] * (k - k_min) + [n_min] * k_min
    middle = [max(n_min, int(round(n_max * ratio ** (-c / (k - 1))))) for c in range(1, k - 1)]
    return [n_max] + middle + [n_min]


@dataclass(frozen=True)
class Problem:
    """A UFM + SCL problem. Build it with :meth:`balanced`, :meth:`step`, :meth:`long_tail` or
    :meth:`from_counts` (they validate); fields:

    - ``counts``: examples per class (n_c >= 2); examples are numbered class by class;
    - ``tau``: temperature > 0; ``relu``: nonnegative embeddings;
    - ``dim``: embedding dimension d (default k without ReLU, 2k with ReLU: gradient descent at d = k
      with ReLU often stalls, docs/theory.md section 3);
    - ``batching``: a :class:`~ufm.batching.Batching` (default full batch);
    - ``prototypes``: a :class:`Prototypes` or None; ``seed``: every random choice;
    - ``objective``: the options of a registered loss (:mod:`ufm.objectives`): ``ufm.SCL()`` (the
      default, :data:`DEFAULT_OBJECTIVE`) or ``ufm.CrossEntropy(...)`` (docs/theory.md section 10), or a
      loss of the user's (``ufm.register_objective``).
    """

    counts: tuple[int, ...]
    tau: float = 1.0
    relu: bool = False
    dim: int = 0
    batching: Batching = field(default_factory=Batching.full)
    prototypes: Prototypes | None = None
    seed: int = 0
    objective: ObjectiveOptions = DEFAULT_OBJECTIVE

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_counts(cls, counts: Sequence[int], *, tau: float | None = None, relu: bool = False,
                    dim: int | None = None, batching: Batching | None = None,
                    prototypes: Prototypes | None = None, seed: int = 0,
                    objective: ObjectiveOptions = DEFAULT_OBJECTIVE) -> "Problem":
        """The problem with these class counts; ``tau`` defaults to 1 and is refused by an objective
        without a temperature (``uses_tau`` False: the learned classifier, whose logits are W h + b)."""
        counts = _as_counts(counts)
        _check_objective(objective)
        if tau is not None and not uses_tau(objective):
            raise ProblemError(f"{objective.describe()} has no temperature; drop tau")
        plain = _plain_fields({"relu": relu, "dim": dim, "tau": 1.0 if tau is None else tau, "seed": seed})
        k = len(counts)
        dim = (2 * k if plain["relu"] else k) if plain["dim"] is None else plain["dim"]
        problem = cls(counts=counts, tau=plain["tau"], relu=plain["relu"], dim=dim,
                      batching=Batching.full() if batching is None else batching, prototypes=prototypes,
                      seed=plain["seed"], objective=objective)
        problem.validate()
        return problem

    @classmethod
    def balanced(cls, k: int, m: int, **options: Any) -> "Problem":
        """k classes of m examples each."""
        k, m = whole_number(k, "number of classes k"), whole_number(m, "examples per class")
        if k < 2:
            raise ProblemError(f"need at least 2 classes (got k = {k})")
        return cls.from_counts([m] * k, **options)

    @classmethod
    def step(cls, k: int, n_max: int, ratio: float, minority_fraction: float = 0.5,
             **options: Any) -> "Problem":
        """STEP imbalance (:func:`profile_counts`): ``round(minority_fraction * k)`` minority classes of
        exactly ``n_max / ratio`` examples (a whole number) after the majority classes of ``n_max``."""
        return cls.from_counts(profile_counts("step", k, n_max, ratio, minority_fraction), **options)

    @classmethod
    def long_tail(cls, k: int, n_max: int, ratio: float, **options: Any) -> "Problem":
        """Long-tail imbalance (:func:`profile_counts`): ``n_c = round(n_max * ratio^(-c/(k-1)))``,
        the last class exactly ``n_max / ratio`` (a whole number)."""
        return cls.from_counts(profile_counts("long-tail", k, n_max, ratio), **options)

    @classmethod
    def from_profile(cls, imbalance: str, k: int, n_max: int, ratio: float = 1.0,
                     minority_fraction: float | None = None, **options: Any) -> "Problem":
        """The profile by name (:func:`profile_counts`): ``"balanced"``, ``"step"`` or ``"long-tail"``."""
        return cls.from_counts(profile_counts(imbalance, k, n_max, ratio, minority_fraction), **options)

    def with_(self, **changes: Any) -> "Problem":
        """A copy with some fields changed, validated again (numbers as Python numbers: a NumPy scalar
        given is converted, so :meth:`describe` stays JSON)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ProblemError(f"Problem has no field {unknown[0]!r}; the fields are "
                               f"{', '.join(f.name for f in fields(self))}")
        if "counts" in changes:
            changes["counts"] = _as_counts(changes["counts"])
        problem = replace(self, **_plain_fields(changes))
        problem.validate()
        return problem

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ProblemError` naming the first problem found (types first, then values)."""
        self._validate_types()
        self._validate_values()
        self._validate_batching()

    def _validate_types(self) -> None:
        if not isinstance(self.counts, tuple) or not all(type(c) is int for c in self.counts):
            _as_counts(self.counts)          # names a non-integer count
            raise ProblemError(f"counts must be a tuple of ints (got {self.counts!r}); build problems with "
                               "Problem.from_counts")
        if not isinstance(self.batching, Batching):
            hint = ""
            if isinstance(self.batching, str):
                hint = (" (Batching.full())" if self.batching == "full" else f" such as Batching.{self.batching}(8)"
                        if self.batching in ("random", "balanced", "binding") else "")
            raise ProblemError(f"batching must be a ufm.Batching{hint}, not {self.batching!r}")
        if self.prototypes is not None and not isinstance(self.prototypes, Prototypes):
            raise ProblemError(f"prototypes must be a ufm.Prototypes such as Prototypes('etf') or None "
                               f"(got {self.prototypes!r})")
        _check_objective(self.objective)

    def _validate_values(self) -> None:
        k = len(self.counts)
        if k < 2:
            raise ProblemError(f"need at least 2 classes (got {k})")
        for c, n_c in enumerate(self.counts):
            if n_c < 0:
                raise ProblemError(f"class {c} has a negative count ({n_c})")
            if n_c < 1:
                raise ProblemError(f"class {c} has 0 examples; every class needs at least one")
            if n_c < self.objective.min_class_size:
                raise ProblemError(f"class {c} has {n_c} example(s), so its anchors have no positive pair; "
                                   f"every class needs at least {self.objective.min_class_size} examples")
        if not (isinstance(self.tau, (int, float, np.integer, np.floating)) and not isinstance(self.tau, bool)
                and math.isfinite(self.tau) and self.tau > 0):
            raise ProblemError(f"temperature tau must be a positive number (got {self.tau})")
        if not TAU_MIN <= self.tau <= TAU_MAX:
            raise ProblemError(f"temperature tau = {self.tau:g} is outside the supported range "
                               f"[{TAU_MIN:g}, {TAU_MAX:g}] (docs/theory.md section 3a); for the tau -> 0 "
                               "limit see `ufm predict`")
        whole_number(self.dim, "embedding dimension dim", 1)
        whole_number(self.seed, "seed", 0, SEED_MAX)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ProblemError(f"relu must be True or False (got {self.relu!r})")
        if self.relu and self.dim < k:
            raise ProblemError(f"with ReLU the optimum is an orthogonal frame of k = {k} nonnegative "
                               f"vectors, which needs dim >= k (got dim = {self.dim}); raise --dim")
        if self.prototypes is not None:
            p = self.prototypes
            if p.kind not in PROTOTYPE_KINDS:
                raise ProblemError(f"unknown prototype kind {p.kind!r}; use one of {', '.join(PROTOTYPE_KINDS)}")
            whole_number(p.per_class, "prototypes per class", 1)
            if not isinstance(p.anchors, (bool, np.bool_)):
                raise ProblemError(f"Prototypes.anchors must be True or False (got {p.anchors!r})")
            need = k if p.kind == "of" else k - 1
            if self.dim < need:
                raise ProblemError(f"{p.kind} prototypes for k = {k} classes need dim >= {need} "
                                   f"(got {self.dim})")
        self.objective.validate(k, self.dim, bool(self.relu))
        if not self.objective.batched:
            if self.prototypes is not None:
                raise ProblemError(f"prototypes belong to SCL; {self.objective.describe()} has no prototypes "
                                   "(drop them)")
            if self.batching.scheme != "full":
                raise ProblemError(f"{self.objective.describe()} is a sum over examples with no batch structure; "
                                   "use full batch (drop the batching)")

    def _validate_batching(self) -> None:
        k = len(self.counts)
        self.batching.validate(self.counts)
        if self.prototypes is None and not self.batching.scheme == "full" and not self._batches_surely_mixed():
            labels = self.labels
            per_batch = [np.bincount(labels[np.asarray(b)], minlength=k) for b in self.batches(0)]
            if not any(c.max() >= 2 for c in per_batch):
                raise ProblemError("no batch (epoch 0) holds two examples of one class, so no anchor has a "
                                   "positive and the loss is 0 for every embedding; use larger batches")
            if not any(c.max() >= 2 and (c > 0).sum() >= 2 for c in per_batch):
                raise ProblemError("no batch (epoch 0) holds a positive pair together with another class, so "
                                   "no anchor has a negative and the loss does not depend on how the classes "
                                   "relate (every collapsed embedding is optimal); use larger or mixed batches")

    def _batches_surely_mixed(self) -> bool:
        """Whether every epoch of a reshuffled batching surely has a batch with a positive pair and
        another class, whatever the draw (so :meth:`validate` need not draw epoch 0, which loads JAX):
        batch-binding always (each batch holds one example of every class and at least one more);
        ``random`` and ``balanced`` when their widest batch (always present) has more rows than there
        are classes (so two share a class) and than the largest class (so it holds two classes)."""
        b = self.batching
        if not b.is_random or self.k < 2:
            return False
        if b.scheme == "binding":
            return True
        width = draw_shape(b.scheme, self.counts, int(b.batch_size))[1]
        return width > self.k and width > max(self.counts)

    # ---------------------------------------------------------------- derived data
    @property
    def k(self) -> int:
        return len(self.counts)

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def labels(self) -> np.ndarray:
        """(n,) class of each example, class by class in count order."""
        return np.repeat(np.arange(self.k), self.counts)

    @property
    def shape(self) -> ProblemShape:
        """The problem's :class:`ProblemShape` (the static key of an objective's compiled programs)."""
        return ProblemShape(self.n, self.k, self.dim, bool(self.relu), self.objective)

    def arrays(self) -> ProblemArrays:
        """The problem's :class:`ProblemArrays` (NumPy; traced where a compiled function takes them)."""
        return ProblemArrays(self.labels.astype(np.int32), np.asarray(self.counts, dtype=np.int32),
                             np.asarray(self.tau, dtype=np.float64))

    @property
    def is_full_batch(self) -> bool:
        return self.batching.scheme == "full"

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        """The batches (index arrays) of this epoch, drawn from ``seed``."""
        return self.batching.batches(self.counts, seed=self.seed, epoch=epoch)

    def prototype_rows(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """``(W, prototype_labels)`` or ``(None, None)`` without prototypes."""
        if self.prototypes is None:
            return None, None
        return self.prototypes.vectors(self.k, self.dim)

    @property
    def class_rows(self) -> int:
        """The most rows of one class in one batch, its prototypes included: a class's count (a
        batching never holds an example twice; an explicit one is counted as given) plus its
        prototypes. The fused kernel sizes its positives' window by it (``ufm.objectives.scl.precise``)."""
        extra = np.zeros(self.k, dtype=int)
        if self.prototypes is not None:
            extra = np.bincount(np.asarray(self.prototype_rows()[1], dtype=int), minlength=self.k)
        rows = np.asarray(self.counts) + extra
        if self.batching.scheme == "explicit":
            labels = self.labels
            rows = np.maximum(rows, max(np.bincount(labels[np.asarray(b, dtype=int)], minlength=self.k).max()
                                        for b in self.batches(0)) + extra)
        return int(rows.max())

    @property
    def prototype_anchors(self) -> bool:
        """Whether the prototypes are anchors too ((P-b)); True without prototypes (no effect then)."""
        return True if self.prototypes is None else bool(self.prototypes.anchors)

    def describe(self) -> dict:
        """JSON-ready description (the fields the ``ufm`` command reports)."""
        return {
            "counts": list(self.counts), "tau": self.tau, "relu": self.relu, "dim": self.dim,
            "batching": self.batching.scheme, "batch_size": self.batching.batch_size,
            "prototypes": None if self.prototypes is None else self.prototypes.kind,
            "prototypes_per_class": None if self.prototypes is None else self.prototypes.per_class,
            "seed": self.seed,
        }
