"""Problem constructors (docs/theory.md section 2 profiles) and validation messages."""

import numpy as np
import pytest

from ufm import Batching, Problem, ProblemError, Prototypes


def test_balanced():
    p = Problem.balanced(3, 4, tau=0.5)
    assert p.counts == (4, 4, 4) and p.n == 12 and p.k == 3 and p.dim == 3
    assert p.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_step_counts():
    p = Problem.step(6, 20, 10, minority_fraction=0.5)
    assert p.counts == (20, 20, 20, 2, 2, 2)
    p = Problem.step(4, 12, 3, minority_fraction=0.25)
    assert p.counts == (12, 12, 12, 4)


def test_long_tail_counts_follow_the_formula():
    k, n_max, ratio = 5, 100, 20
    p = Problem.long_tail(k, n_max, ratio)
    want = [max(2, round(n_max * ratio ** (-c / (k - 1)))) for c in range(k)]
    assert list(p.counts) == want
    assert p.counts[0] == 100 and p.counts[-1] == 5


def test_relu_default_dimension_is_2k():
    assert Problem.balanced(4, 3, relu=True).dim == 8
    assert Problem.balanced(4, 3, relu=True, dim=4).dim == 4


@pytest.mark.parametrize("make,match", [
    (lambda: Problem.from_counts([3, 1, 3]), "class 1 has 1 example"),
    (lambda: Problem.from_counts([3, 0]), "class 1 has 0"),
    (lambda: Problem.from_counts([3, -2]), "negative"),
    (lambda: Problem.from_counts([3, 2.5]), "not an integer"),
    (lambda: Problem.from_counts(["a", 3]), "not an integer"),
    (lambda: Problem.from_counts([3]), "at least 2 classes"),
    (lambda: Problem.balanced(3, 3, tau=0), "tau"),
    (lambda: Problem.balanced(3, 3, tau=-0.5), "tau"),
    (lambda: Problem.balanced(3, 3, tau=float("nan")), "tau"),
    (lambda: Problem.balanced(4, 3, relu=True, dim=3), "dim >= k"),
    (lambda: Problem.step(4, 10, 3), "whole number"),
    (lambda: Problem.step(4, 10, 0.5), "ratio"),
    (lambda: Problem.step(4, 10, 2, minority_fraction=1.0), "minority fraction"),
    (lambda: Problem.balanced(4, 3, prototypes=Prototypes("of"), dim=3), "need dim"),
    (lambda: Problem.balanced(4, 3, prototypes=Prototypes("xyz")), "prototype kind"),
    (lambda: Problem.from_counts("44"), "sequence of class counts"),           # not (4, 4)
    (lambda: Problem.from_counts([4, 4], dim=2.7), "dim must be an integer"),  # not 2
    (lambda: Problem.from_counts([4, 4], batching="random"), "Batching.random"),
    (lambda: Problem.from_counts([4, 4], seed=-1), "seed"),
    (lambda: Problem.from_counts([4, 4], seed=2 ** 70), "seed"),
    (lambda: Problem.from_counts([4, 4], relu="yes"), "relu"),
    (lambda: Problem.balanced(3, 3, tau=1e-300), "supported range"),
    (lambda: Problem.long_tail(4, 10, 3), "whole number"),                    # not a relabelled 10/3
    (lambda: Problem.long_tail(4, 10, 10), "at least 2"),                     # not clamped to 2
    (lambda: Problem.from_counts([4, 4], batching=Batching.random(2.5)), "batch size must be an integer"),
    (lambda: Problem.from_counts([4, 4], batching=Batching("full", batch_size=4)), "does not apply"),
    (lambda: Problem.from_counts([4, "4"]), "not an integer"),
    (lambda: Problem.from_counts([4, 4], batching=np.array([1, 2])), "ufm.Batching"),
    (lambda: Problem.from_counts([4, 4], batching=Batching("explicit", explicit=((0, 1.5), (2, 3, 4, 5, 6, 7)))),
     "must be an integer"),
    (lambda: Problem.from_counts([4, 4], batching=Batching.random(8)), "full batching"),  # batch size >= n
    (lambda: Problem.from_counts([4, 4]).with_(counts=(4, "4")), "not an integer"),
    (lambda: Problem.from_counts([4, 4]).with_(counts=(4, 4.5)), "not an integer"),
    (lambda: Problem.from_counts([4, 4]).with_(batching="x"), "ufm.Batching"),
    (lambda: Problem.from_counts([4, 4]).with_(prototypes="etf"), "ufm.Prototypes"),
    (lambda: Problem.from_counts([4, 4], prototypes=Prototypes("etf", 1, "no")), "anchors"),
    (lambda: Problem.from_profile("long-tail", 4, 10, 2, 0.3), "step profile only"),
    (lambda: Problem.from_counts([4, 4, 2], batching=Batching.from_lists([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])),
     "no anchor has a negative"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises(ProblemError, match=match):
        make()


def test_errors_are_one_line():
    with pytest.raises(ProblemError) as info:
        Problem.from_counts([3, 1])
    assert "\n" not in str(info.value)


def test_prototype_vectors_have_the_named_geometry():
    W, labels = Prototypes("etf", 3).vectors(4, 5)
    assert W.shape == (12, 5) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    means = W[::3]
    np.testing.assert_allclose(means @ means.T, 4 / 3 * (np.eye(4) - 1 / 4), atol=1e-12)
    W, _ = Prototypes("of", 1).vectors(3, 4)
    np.testing.assert_allclose(W @ W.T, np.eye(3), atol=1e-15)
    assert (W >= 0).all()


def test_batches_follow_problem_seed():
    p = Problem.balanced(3, 4, batching=Batching.random(4), seed=1)
    q = p.with_(seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(p.batches(), q.batches()))
    assert all(np.array_equal(a, b) for a, b in zip(p.batches(), p.with_(tau=2.0).batches()))


def test_profiles_have_exactly_the_ratio_asked_for():
    for k, n_max, ratio in [(4, 12, 3), (5, 100, 20), (6, 40, 8), (3, 2, 1)]:
        for make in (Problem.step, Problem.long_tail):
            counts = make(k, n_max, ratio).counts
            assert max(counts) == n_max and max(counts) / min(counts) == ratio


def test_with_normalises_and_accepts_numpy_scalars():
    p = Problem.from_counts([4, 4]).with_(tau=np.float32(0.5), counts=[3, 3])
    assert p.counts == (3, 3) and p.tau == 0.5
