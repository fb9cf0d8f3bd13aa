"""Independent reference computations for the tests: plain Python loops over docs/theory.md's formulas.

Nothing here imports the toolkit's loss; it is written from the formula alone.
"""

from __future__ import annotations

import math

import numpy as np


def scl_loop(H, labels, tau, batches=None, reduction="sum", prototypes=None, prototype_labels=None,
             prototype_anchors=True):
    """SCL by a double loop over anchors and positives (docs/theory.md section 1), in float64 Python."""
    H = np.asarray(H, dtype=float)
    labels = [int(y) for y in labels]
    rows = [H[i] for i in range(len(H))]
    row_labels = list(labels)
    n = len(rows)
    proto_ids = []
    if prototypes is not None:
        for w, y in zip(np.asarray(prototypes, dtype=float), prototype_labels):
            proto_ids.append(len(rows))
            rows.append(w)
            row_labels.append(int(y))
    if batches is None:
        batches = [list(range(n))]
    total = 0.0
    for batch in batches:
        members = [int(i) for i in batch] + proto_ids
        anchors = [int(i) for i in batch] + (proto_ids if prototype_anchors else [])
        batch_sum, n_with_pos = 0.0, 0
        for i in anchors:
            others = [a for a in members if a != i]
            positives = [j for j in others if row_labels[j] == row_labels[i]]
            if not positives:
                continue
            n_with_pos += 1
            dots = [float(np.dot(rows[i], rows[a])) / tau for a in others]
            top = max(dots)
            lse = top + math.log(sum(math.exp(v - top) for v in dots))
            batch_sum += sum(lse - float(np.dot(rows[i], rows[j])) / tau for j in positives) / len(positives)
        if reduction == "sum":
            total += batch_sum
        elif reduction == "mean":
            total += batch_sum / len(anchors)
        elif reduction == "mean_with_positives":
            total += batch_sum / n_with_pos if n_with_pos else 0.0
        else:
            raise ValueError(reduction)
    return total


def supcon_reference(features, labels, temperature, base_temperature=None):
    """The reference SupCon loss (HobbitLong/SupContrast, one view, after the fix for anchors without
    positives), transcribed to NumPy: the mean over anchors of
    -(tau / base_tau) * mean_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau) )."""
    features = np.asarray(features, dtype=float)
    labels = np.asarray(labels).reshape(-1, 1)
    base_temperature = temperature if base_temperature is None else base_temperature
    mask = (labels == labels.T).astype(float)
    anchor_dot_contrast = features @ features.T / temperature
    logits = anchor_dot_contrast - anchor_dot_contrast.max(axis=1, keepdims=True)
    logits_mask = 1.0 - np.eye(len(features))
    mask = mask * logits_mask
    exp_logits = np.exp(logits) * logits_mask
    log_prob = logits - np.log(exp_logits.sum(axis=1, keepdims=True))
    mask_pos_pairs = mask.sum(axis=1)
    mask_pos_pairs = np.where(mask_pos_pairs < 1e-6, 1.0, mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(axis=1) / mask_pos_pairs
    return float((-(temperature / base_temperature) * mean_log_prob_pos).mean())


def orthogonal_frame_loss(counts, tau):
    """docs/theory.md section 2: sum_c n_c log((n_c - 1) + (n - n_c) exp(-1/tau))."""
    n = sum(counts)
    return sum(c * math.log((c - 1) + (n - c) * math.exp(-1 / tau)) for c in counts)


def etf_loss(counts, tau):
    """SCL at collapsed simplex-ETF embeddings for any counts: anchors of class c see n_c - 1 positives
    at inner product 1 and n - n_c negatives at -1/(k-1). Balanced counts give docs/theory.md's
    n log((m-1) + (n-m) exp(-(1 + 1/(k-1))/tau))."""
    n, k = sum(counts), len(counts)
    return sum(c * math.log((c - 1) + (n - c) * math.exp(-(1 + 1 / (k - 1)) / tau)) for c in counts)


def collapsed_embeddings(mean_vectors, counts):
    """Rows h_i = mean_vectors[y_i] (neural collapse)."""
    return np.repeat(np.asarray(mean_vectors, dtype=float), counts, axis=0)


def etf_vectors(k):
    """k unit vectors in R^k with pairwise inner product -1/(k-1): centred standard basis, normalised."""
    V = np.eye(k) - 1.0 / k
    return V / np.linalg.norm(V, axis=1, keepdims=True)
