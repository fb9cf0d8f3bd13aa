"""The PyTorch baseline of benchmarks/ computes docs/theory.md's loss (sum reduction): checked against the
brute-force loop. Skipped when torch is not installed (it is a `bench` extra, never a dependency)."""

import numpy as np
import pytest

from reference import scl_loop

torch = pytest.importorskip("torch")


def test_baseline_loss_is_the_sum_reduction_scl():
    from benchmarks.torch_baseline import supcon_sum
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [5, 3, 2, 1])          # a class of 1: an anchor without positives
    H = rng.standard_normal((11, 3))
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    got = float(supcon_sum(torch.tensor(H), torch.tensor(labels), 0.4))
    assert got == pytest.approx(scl_loop(H, labels, 0.4), rel=1e-12)
