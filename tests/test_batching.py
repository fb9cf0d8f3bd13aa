"""Batching schemes, packing, and the conditions of docs/theory.md section 4."""

import json

import numpy as np
import pytest

from ufm import Batching, Problem, ProblemError, check_conditions, pack


COUNTS = (6, 5, 4, 3)
LABELS = np.repeat(np.arange(4), COUNTS)


def covers_all(batches, n):
    return set(np.concatenate(batches).tolist()) == set(range(n))


@pytest.mark.parametrize("scheme", ["random", "balanced", "binding"])
def test_random_schemes_cover_every_example_and_follow_the_seed(scheme):
    b = Batching(scheme, batch_size=7)
    first = b.batches(COUNTS, seed=3, epoch=0)
    assert covers_all(first, 18)
    again = b.batches(COUNTS, seed=3, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    other = b.batches(COUNTS, seed=3, epoch=1)
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(first, other))
    assert all(len(x) <= 7 for x in first)
    for batch in first:
        assert len(set(batch.tolist())) == len(batch)


def test_random_is_a_partition():
    batches = Batching.random(5).batches(COUNTS, seed=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(18))


def test_binding_keeps_one_example_of_every_class_in_every_batch():
    batches = Batching.binding(7).batches(COUNTS, seed=1, epoch=2)
    binding = [0, 6, 11, 15]   # the first example of each class
    for batch in batches:
        assert set(binding) <= set(batch.tolist())
        assert len(batch) <= 7
    rest = np.concatenate([np.setdiff1d(b, binding) for b in batches])
    assert sorted(rest.tolist()) == sorted(set(range(18)) - set(binding))


def test_balanced_batches_are_stratified():
    counts = (8, 8, 4, 4)
    batches = Batching.balanced(6).batches(counts, seed=0)
    labels = np.repeat(np.arange(4), counts)
    assert len(batches) == 4
    for batch in batches:
        per_class = np.bincount(labels[batch], minlength=4)
        assert per_class.tolist() == [2, 2, 1, 1]


def test_pack_pads_and_masks():
    packed = pack([np.array([3, 1]), np.array([0, 2, 4])])
    assert packed.index.shape == (2, 3)
    assert packed.valid.tolist() == [[True, True, False], [True, True, True]]
    assert packed.index[0, :2].tolist() == [3, 1]
    with pytest.raises(ProblemError):
        pack([np.arange(4)], width=2)


def test_theory_counterexample_classes_that_never_meet():
    labels = np.repeat(np.arange(4), 4)
    batches = [np.arange(0, 8), np.arange(8, 16)]   # classes {0,1} and {2,3}: 0 and 3 never meet
    result = check_conditions(labels, batches)
    assert result.neural_collapse and not result.orthogonal_frame
    assert (0, 3) in result.unmet_pairs and (0, 1) not in result.unmet_pairs
    assert set(result.unmet_pairs) == {(0, 2), (0, 3), (1, 2), (1, 3)}


def test_batch_binding_guarantees_the_orthogonal_frame():
    for seed in range(5):
        batches = Batching.binding(6).batches((4, 4, 4, 4), seed=seed)
        result = check_conditions(np.repeat(np.arange(4), 4), batches)
        assert result.orthogonal_frame and result.neural_collapse


def test_a_split_class_is_reported_with_its_pieces():
    labels = np.array([0, 0, 0, 0, 1, 1])
    batches = [[0, 1, 4, 5], [2, 3, 4, 5]]   # class 0 splits into {0,1} and {2,3}
    result = check_conditions(labels, batches)
    assert not result.neural_collapse and not result.orthogonal_frame
    assert result.disconnected_classes == ((0, 2),)


def test_meeting_needs_a_positive():
    labels = np.array([0, 0, 1, 1])
    # classes 0 and 1 share batches, but never where either has a positive
    batches = [[0, 2], [1, 3], [0, 1], [2, 3]]
    result = check_conditions(labels, batches)
    assert result.unmet_pairs == ((0, 1),)
    assert result.neural_collapse


def test_prototypes_join_every_batch_in_the_conditions():
    labels = np.repeat(np.arange(4), 4)
    batches = [np.arange(0, 8), np.arange(8, 16)]
    result = check_conditions(labels, batches, prototype_labels=np.arange(4))
    assert result.orthogonal_frame


def test_brute_force_agrees_with_check_conditions_on_random_batchings():
    """Compare with a direct transcription: pairwise reachability by repeated relaxation."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        counts = rng.integers(2, 4, size=3)
        labels = np.repeat(np.arange(3), counts)
        n = len(labels)
        batches = [rng.choice(n, size=rng.integers(2, n + 1), replace=False) for _ in range(rng.integers(1, 4))]
        got = check_conditions(labels, batches)
        # condition 1 by Floyd-Warshall style closure
        ok1 = True
        for c in range(3):
            idx = np.flatnonzero(labels == c)
            reach = np.eye(len(idx), dtype=bool)
            for b in batches:
                inb = np.isin(idx, b)
                reach |= np.outer(inb, inb)
            for _ in range(len(idx)):
                reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
            ok1 &= bool(reach.all())
        ok2 = all(any(((labels[b] == a).sum() >= 1 and (labels[b] == c).sum() >= 1 and
                       ((labels[b] == a).sum() >= 2 or (labels[b] == c).sum() >= 2)) for b in batches)
                  for a in range(3) for c in range(a + 1, 3))
        assert got.neural_collapse == ok1
        assert got.orthogonal_frame == (ok1 and ok2)


def test_from_file(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps([[0, 1, 2], [2, 3]]))
    assert Batching.from_file(path).explicit == ((0, 1, 2), (2, 3))
    path.write_text("{")
    with pytest.raises(ProblemError, match="not valid JSON"):
        Batching.from_file(path)
    path.write_text('[[0, 1.5]]')
    with pytest.raises(ProblemError, match="integer"):
        Batching.from_file(path)
    with pytest.raises(ProblemError, match="does not exist"):
        Batching.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize("batching,match", [
    (Batching.from_lists([[0, 1, 2], [3, 4]]), "out of every batch"),
    (Batching.from_lists([[0, 1, 2, 3, 4, 5, 6]]), "does not exist"),
    (Batching.from_lists([[0, 1, 2, 3, 4, 5], []]), "empty"),
    (Batching.from_lists([[0, 0, 1, 2, 3, 4, 5]]), "twice"),
    (Batching.random(1), "batch size"),
    (Batching.binding(3), "exceed k"),
    (Batching("weird", 4), "unknown batching"),
])
def test_bad_batchings_are_named(batching, match):
    with pytest.raises(ProblemError, match=match):
        Problem.from_counts([2, 2, 2], batching=batching)


def test_check_conditions_refuses_a_repeated_index():
    """An example listed twice in one batch is not a positive pair of itself: refused, not counted."""
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ProblemError, match="twice"):
        check_conditions(labels, [[0, 0, 2], [1, 3]])
    with pytest.raises(ProblemError, match="does not exist"):
        check_conditions(labels, [[0, 1, 9], [2, 3]])



@pytest.mark.parametrize("labels,batches,protos,match", [
    ([0, 0, 1, 1], None, None, "batches must be a list"),
    ([0, 0, 1, 1], 5, None, "batches must be a list"),
    ([[0], [1, 2]], [[0]], None, "labels must be"),
    ([0, 0, 10 ** 9, 10 ** 9], [[0, 1, 2, 3]], None, "every class present"),   # not a 888 PB bincount
    ([0, 0, 1, 1], [[0, 1, 2, 3]], [7], "prototype labels must lie in 0..1"),
    ([0, 0, 1, 1], [[0, 1, 2, 3]], [-1], "prototype labels must lie"),
    ([0, 0, 1, 1], [[0, 1, 2, 3]], [0.5], "prototype labels must be"),
    ([0, 0, 1, 1], [[0, 1, 2, 3]], "ab", "prototype labels must be"),
])
def test_check_conditions_refuses_bad_arguments(labels, batches, protos, match):
    with pytest.raises(ProblemError, match=match):
        check_conditions(labels, batches, protos)


@pytest.mark.parametrize("scheme, counts, batch_size", [
    ("random", (6, 5, 4, 3), 5), ("random", (3, 2), 8),
    ("balanced", (6, 5, 4, 3), 5), ("balanced", (9, 2, 2), 4),
    ("binding", (6, 5, 4, 3), 7), ("binding", (2, 2, 2), 4), ("binding", (1, 1, 2), 5)])
def test_every_epoch_has_the_stated_shape_and_the_scheme_draws_uniformly(scheme, counts, batch_size):
    """ufm.random_batches draws each epoch at one fixed shape (draw_shape, derived by hand in its
    docstring) and shuffles uniformly: over 400 epochs each example's share of the first batch is its
    expected share to within 5 binomial standard deviations (a deterministic draw: seed 0)."""
    from ufm.random_batches import draw_shape
    n, k = sum(counts), len(counts)
    groups, width = draw_shape(scheme, counts, batch_size)
    labels = np.repeat(np.arange(k), counts)
    binding = np.concatenate([[0], np.cumsum(counts)[:-1]])
    epochs = 400
    in_first = np.zeros(n)
    for epoch in range(epochs):
        batches = Batching(scheme, batch_size=batch_size).batches(counts, seed=0, epoch=epoch)
        assert len(batches) == groups and max(len(b) for b in batches) == width
        assert covers_all(batches, n)
        if scheme != "binding":           # a partition
            assert sum(len(b) for b in batches) == n
        else:
            assert all(set(binding) <= set(b.tolist()) for b in batches)
        if scheme == "balanced":          # each class split as evenly as a round-robin deal allows
            per_class = np.array([np.bincount(labels[b], minlength=k) for b in batches])
            assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()
            assert all(np.array_equal(b, np.sort(b)) for b in batches)
        in_first[batches[0]] += 1
    movable = np.setdiff1d(np.arange(n), binding) if scheme == "binding" else np.arange(n)
    if scheme == "balanced":   # per class: the first batch takes a fixed number of each class
        first = Batching(scheme, batch_size=batch_size).batches(counts, seed=0, epoch=0)[0]
        share = np.bincount(labels[first], minlength=k)[labels] / np.asarray(counts)[labels]
    else:
        share = np.full(n, (width - (k if scheme == "binding" else 0)) / len(movable))
    p = share[movable]
    sigma = np.sqrt(epochs * p * (1 - p)) + 1e-12
    assert np.all(np.abs(in_first[movable] - epochs * p) <= 5 * sigma + 1e-9)
