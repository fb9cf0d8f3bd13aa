"""``ufm compare`` and ``theory_checks.compare.compare_features``: every metric against an independent
NumPy computation, the distances growing with the noise, streaming in blocks, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from theory_checks import compare as C
from ufm import Problem
from ufm.app.cli import main

COUNTS = [6, 6, 3, 3]


def _features(sigma: float, seed: int = 0, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ReLU optimum for COUNTS (one coordinate per class, d = 8) plus Gaussian noise of size sigma,
    rows in a shuffled order."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), COUNTS)
    H = np.eye(8)[labels] + sigma * rng.standard_normal((len(labels), 8))
    order = rng.permutation(len(labels)) if shuffle else np.arange(len(labels))
    return H[order], labels[order]


def _reference(H: np.ndarray, labels: np.ndarray, W: np.ndarray) -> dict:
    """The metrics written out with plain NumPy loops (module docstring of theory_checks.compare)."""
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    k, n = labels.max() + 1, len(labels)
    mu = np.array([H[labels == c].mean(axis=0) for c in range(k)])
    sw = sum(np.outer(H[i] - mu[labels[i]], H[i] - mu[labels[i]]) for i in range(n)) / n
    centred = mu - mu.mean(axis=0)
    sb = sum(np.outer(m, m) for m in centred) / k
    norms = np.linalg.norm(centred, axis=1)
    cos_c = [centred[a] @ centred[b] / (norms[a] * norms[b]) for a in range(k) for b in range(k) if a != b]
    nearest = [np.argmin([np.linalg.norm(H[i] - mu[c]) for c in range(k)]) for i in range(n)]
    raw = np.array([[mu[a] @ mu[b] / (np.linalg.norm(mu[a]) * np.linalg.norm(mu[b])) for b in range(k)]
                    for a in range(k)])
    return {"nc1": np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / k,
            "within_class": np.trace(sw) / np.mean(np.sum(H * H, axis=1)),
            "equinorm": norms.std() / norms.mean(), "equiangularity": np.std(cos_c),
            "ncc_agreement": np.mean(np.array(nearest) == labels),
            "self_duality": np.linalg.norm(W / np.linalg.norm(W) - centred / np.linalg.norm(centred)),
            "gram": raw}


def test_every_metric_agrees_with_an_independent_numpy_computation():
    H, labels = _features(0.1)
    W = np.random.default_rng(5).standard_normal((4, 8))
    got = C.compare_features(H, labels, Problem.from_counts(COUNTS, tau=0.5, relu=True), classifier=W)
    want = _reference(H, labels, W)
    for key in ("nc1", "within_class", "equinorm", "equiangularity", "ncc_agreement", "self_duality"):
        assert getattr(got, key) == pytest.approx(want[key], rel=1e-10, abs=1e-12), key
    np.testing.assert_allclose(got.class_mean_gram, want["gram"], atol=1e-10)
    assert got.predicted_status == "optimal"
    np.testing.assert_allclose(got.predicted_gram, np.eye(4), atol=1e-6)       # the orthogonal frame
    from ufm.geometry import normalized_distance
    assert got.distance["predicted"] == pytest.approx(normalized_distance(want["gram"], np.eye(4)), abs=1e-6)


def test_distances_grow_with_the_noise_and_vanish_without_it():
    problem = Problem.from_counts(COUNTS, tau=0.5, relu=True)
    results = [C.compare_features(*_features(sigma), problem) for sigma in (0.0, 0.02, 0.1, 0.3)]
    assert results[0].distance["predicted"] < 1e-6 and results[0].nc1 < 1e-20
    to_optimum = [r.distance["predicted"] for r in results]
    assert to_optimum == sorted(to_optimum) and to_optimum[-1] > 0.1
    assert all(r.nc1 <= s.nc1 for r, s in zip(results, results[1:]))


def test_blocks_give_the_same_numbers_as_one_pass(monkeypatch):
    H, labels = _features(0.2, seed=3)
    problem = Problem.from_counts(COUNTS, tau=0.5, relu=True)
    whole = C.compare_features(H, labels, problem).to_dict()
    monkeypatch.setattr(C, "CHUNK_BYTES", 5 * 8 * H.shape[1])           # 5 rows per block
    blocks = C.compare_features(H, labels, problem).to_dict()
    for key in ("nc1", "within_class", "equinorm", "equiangularity", "ncc_agreement"):
        assert blocks[key] == pytest.approx(whole[key], rel=1e-12)


def test_the_command_reads_npy_npz_and_csv_alike(tmp_path, capsys):
    H, labels = _features(0.1)
    np.save(tmp_path / "f.npy", H)
    np.save(tmp_path / "l.npy", labels)
    np.savez(tmp_path / "f.npz", features=H, labels=labels)
    np.savetxt(tmp_path / "f.csv", np.hstack([H, labels[:, None]]), delimiter=",", fmt="%.17g")
    outs = []
    for argv in ([str(tmp_path / "f.npy"), "--labels", str(tmp_path / "l.npy")], [str(tmp_path / "f.npz")],
                 [str(tmp_path / "f.csv")]):
        assert main(["compare", *argv, "--relu", "--tau", "0.5", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["counts"] == COUNTS and outs[0]["predicted"]["status"] == "optimal"
    for out in outs[1:]:
        assert out["nc1"] == pytest.approx(outs[0]["nc1"], rel=1e-12)
        assert out["distance"] == pytest.approx(outs[0]["distance"], rel=1e-12)


def _bad_inputs(tmp_path) -> list[tuple[list[str], str]]:
    H, labels = _features(0.1)
    (tmp_path / "ragged.csv").write_text("1,2,0\n1,2\n3,4,1\n")
    nan = H.copy()
    nan[3, 2] = np.nan
    np.savez(tmp_path / "nan.npz", features=nan, labels=labels)
    gap = labels.copy()
    gap[gap == 1] = 4
    np.savez(tmp_path / "gap.npz", features=H, labels=gap)
    single = labels.copy()
    single[np.flatnonzero(labels == 2)[:-1]] = 0
    np.savez(tmp_path / "single.npz", features=H, labels=single)
    np.save(tmp_path / "f.npy", H)
    np.save(tmp_path / "short.npy", labels[:-1])
    np.savez(tmp_path / "f.npz", features=H, labels=labels)
    return [([str(tmp_path / "ragged.csv")], "cannot read the features"),
            ([str(tmp_path / "nan.npz")], "NaN or infinite"),
            ([str(tmp_path / "gap.npz")], "class 1 has no rows"),
            ([str(tmp_path / "single.npz")], "every class needs at least 2"),
            ([str(tmp_path / "f.npy"), "--labels", str(tmp_path / "short.npy")], "one label per row"),
            ([str(tmp_path / "f.npy")], "--labels"),
            ([str(tmp_path / "f.npz"), "--counts", "4,4"], "--counts does not apply"),
            ([str(tmp_path / "f.npz"), "--labels", str(tmp_path / "short.npy")], "--labels does not apply")]


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys):
    for argv, match in _bad_inputs(tmp_path):
        assert main(["compare", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_text_file_too_large_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    from ufm.app.commands import compare as command

    H, labels = _features(0.1)
    np.savetxt(tmp_path / "f.csv", np.hstack([H, labels[:, None]]), delimiter=",")
    monkeypatch.setattr(command, "MAX_CSV_BYTES", 100)
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed before the size check"))
    assert main(["compare", str(tmp_path / "f.csv")]) == 2
    assert "more than the" in capsys.readouterr().err


def test_a_redrawn_batching_is_predicted_on_pooled_epochs_and_a_given_prediction_is_used():
    """Random batches are predicted on 8 epochs' batches pooled (geometry says so; under ReLU the
    pooled problem's certified optimum is the orthogonal frame, cosines 0); a prediction passed in is
    used as given (its cosines come back), and one of the wrong shape is refused in one line."""
    from ufm import Batching
    from ufm.errors import ProblemError

    H, labels = _features(0.05)
    problem = Problem.from_counts(COUNTS, tau=0.5, relu=True, batching=Batching.random(6))
    geometry, gram, status = C.predicted_optimum(problem)
    assert geometry == f"gradient-descent on {C.PREDICTION_EPOCHS} epochs' batches" and status == "optimal"
    np.testing.assert_allclose(gram, np.eye(4), atol=1e-6)
    given = ("given", np.full((4, 4), 0.5) + 0.5 * np.eye(4), "optimal")
    result = C.compare_features(H, labels, problem, prediction=given)
    assert result.predicted_geometry == "given" and np.array_equal(result.predicted_gram, given[1])
    with pytest.raises(ProblemError, match="prediction must be"):
        C.compare_features(H, labels, problem, prediction=("x", np.eye(3), "optimal"))
