"""The options of the cross-entropy objective (docs/theory.md section 10), without its mathematics:
what a :class:`~ufm.problem.Problem` holds and validates, and what the command checks before any work
(no JAX, no SciPy here; the objective itself is :mod:`ufm.objectives.ce`)."""

from __future__ import annotations

from dataclasses import dataclass

from ufm.errors import ProblemError, finite_number

NAME = "ce"
CLASSIFIERS = ("etf", "of", "learned")
#: The weight decays the toolkit accepts. Balanced, the optimum is H = W = 0 once lambda sqrt(k n) >= 1
#: (the slope of CE at 0 in :func:`ufm.objectives.ce.learned_optimal_product`), so above 1 it is 0 for every problem;
#: below 1e-6 the norms grow as log(1/lambda) and the conditioning of F with them.
WEIGHT_DECAY_MIN, WEIGHT_DECAY_MAX = 1e-6, 1.0


@dataclass(frozen=True)
class CrossEntropy:
    """The CE objective of a :class:`~ufm.problem.Problem`: ``classifier`` ``"etf"``, ``"of"`` (fixed
    rows) or ``"learned"`` (with ``weight_decay`` lambda > 0, required there and refused elsewhere)."""

    classifier: str = "etf"
    weight_decay: float | None = None

    name = NAME
    #: CE is defined for a class of one example (no pairs needed)
    min_class_size = 1
    #: a sum over examples: no batchings, no prototypes
    batched = False

    #: the command's options that build it (``ufm solve --loss ce --classifier ... --weight-decay ...``)
    CLI_FLAGS = ("classifier", "weight_decay")
    #: how the command declares them: flag -> argparse keywords, with ``"real": (lo, hi)`` for a number
    #: in [lo, hi] (the command builds its parser)
    CLI_ARGUMENTS = {
        "--classifier": {"choices": CLASSIFIERS,
                         "help": "with --loss ce: fixed ETF or orthogonal-frame rows, or a learned classifier"},
        "--weight-decay": {"real": (WEIGHT_DECAY_MIN, WEIGHT_DECAY_MAX),
                           "help": f"with --classifier learned: lambda in "
                                   f"[{WEIGHT_DECAY_MIN:g}, {WEIGHT_DECAY_MAX:g}]"},
    }

    @classmethod
    def from_cli(cls, values: dict) -> "CrossEntropy":
        """The options the command's ``--classifier`` and ``--weight-decay`` give (None: not given)."""
        if values.get("classifier") is None:
            raise ProblemError("--loss ce needs --classifier etf, of or learned")
        if values["classifier"] != "learned" and values.get("weight_decay") is not None:
            raise ProblemError(f"--weight-decay does not apply to the fixed {values['classifier']} classifier "
                               "(use --classifier learned)")
        if values["classifier"] == "learned" and values.get("weight_decay") is None:
            raise ProblemError("--classifier learned needs --weight-decay lambda > 0")
        return cls(values["classifier"], values.get("weight_decay"))

    @property
    def learned(self) -> bool:
        return self.classifier == "learned"

    @property
    def uses_tau(self) -> bool:
        """The learned classifier's logits W h + b have no temperature."""
        return not self.learned

    def describe(self) -> str:
        """A short label: ``"CE, etf classifier"`` or ``"CE, learned classifier, lambda = 0.005"``."""
        if self.learned:
            return f"CE, learned classifier, lambda = {self.weight_decay:g}"
        return f"CE, {self.classifier} classifier"

    def validate(self, k: int, dim: int, relu: bool) -> None:
        """Raise :class:`ProblemError` for a classifier, weight decay, dim or ReLU that does not fit."""
        if self.classifier not in CLASSIFIERS:
            raise ProblemError(f"unknown classifier {self.classifier!r}; use one of {', '.join(CLASSIFIERS)}")
        if self.learned:
            if self.weight_decay is None:
                raise ProblemError("the learned classifier needs a weight decay lambda > 0 (--weight-decay), "
                                   "without which the CE minimum is not attained")
            lam = finite_number(self.weight_decay, "weight decay")
            if not WEIGHT_DECAY_MIN <= lam <= WEIGHT_DECAY_MAX:
                raise ProblemError(f"weight decay must lie in [{WEIGHT_DECAY_MIN:g}, {WEIGHT_DECAY_MAX:g}] "
                                   f"(got {lam:g}); docs/theory.md section 10")
            if relu:
                raise ProblemError("the learned-classifier UFM has unconstrained features; ReLU does not apply "
                                   "to it (drop --relu, or use --classifier of)")
            return
        if self.weight_decay is not None:
            raise ProblemError(f"weight decay applies to the learned classifier only (the {self.classifier} "
                               "classifier is fixed and the embeddings have unit norm); drop it")
        if self.classifier == "etf" and relu:
            raise ProblemError("the fixed ETF classifier has negative entries, so with ReLU no closed form is "
                               "known; use --classifier of with --relu")
        need = k - 1 if self.classifier == "etf" else k
        if dim < need:
            raise ProblemError(f"the fixed {self.classifier} classifier for k = {k} classes needs dim >= {need} "
                               f"(got {dim})")
