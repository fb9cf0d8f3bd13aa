"""Predictions against independent closed forms and the brute-force loss loop."""

import numpy as np
import pytest

from reference import collapsed_embeddings, etf_loss, orthogonal_frame_loss, scl_loop
from theory_checks.predictions import predict
from ufm import Batching, Problem, Prototypes


def test_relu_full_batch_orthogonal_frame():
    p = Problem.from_counts([10, 5, 3, 2], tau=0.5, relu=True)
    pred = predict(p)
    assert pred.geometry == "orthogonal-frame"
    assert pred.loss == pytest.approx(orthogonal_frame_loss(p.counts, 0.5), rel=1e-13)
    np.testing.assert_array_equal(pred.class_mean_gram, np.eye(4))


def test_balanced_etf():
    p = Problem.balanced(5, 4, tau=0.7)
    pred = predict(p)
    assert pred.geometry == "etf"
    assert pred.loss == pytest.approx(etf_loss(p.counts, 0.7), rel=1e-13)


def test_relu_binding_loss_is_the_bound_in_every_batch():
    p = Problem.from_counts([5, 4, 3], tau=0.5, relu=True, batching=Batching.binding(6), seed=2)
    pred = predict(p)
    assert pred.geometry == "orthogonal-frame"
    H = collapsed_embeddings(np.eye(3), p.counts)
    assert pred.loss == pytest.approx(scl_loop(H, p.labels, 0.5, p.batches(0)), rel=1e-12)


def test_violating_batching_has_no_prediction_and_says_why():
    p = Problem.balanced(4, 4, relu=True, batching=Batching.from_lists([range(8), range(8, 16)]))
    pred = predict(p)
    assert pred.geometry == "none" and pred.loss is None
    assert "never meet" in pred.why


def test_small_dim_without_relu_has_no_prediction():
    pred = predict(Problem.balanced(4, 3, dim=2))
    assert pred.geometry == "none" and "dim" in pred.why


def test_relu_of_prototypes_predict_the_prototypes():
    p = Problem.from_counts([6, 3, 2], tau=0.5, relu=True, prototypes=Prototypes("of", 2),
                            batching=Batching.random(4))
    pred = predict(p)
    assert pred.geometry == "prototypes"
    W, wl = p.prototype_rows()
    H = np.eye(3, p.dim)[p.labels]
    assert pred.loss == pytest.approx(scl_loop(H, p.labels, 0.5, p.batches(0), "sum", W, wl, True), rel=1e-12)
