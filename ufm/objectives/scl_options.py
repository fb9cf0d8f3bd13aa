"""The options of the supervised contrastive loss, the default objective (docs/theory.md sections 1-3):
none of its own (tau, ReLU, batching and prototypes are the Problem's). No JAX here."""

from __future__ import annotations

from dataclasses import dataclass

NAME = "scl"


@dataclass(frozen=True)
class SCL:
    """SCL as a :class:`~ufm.problem.Problem`'s ``objective`` (the default)."""

    name = NAME
    #: an anchor needs a positive: a class of one example has none
    min_class_size = 2
    batched = True

    def validate(self, k: int, dim: int, relu: bool) -> None:
        """SCL fits every k, dim and ReLU the Problem accepts."""

    def describe(self) -> str:
        return "SCL"
