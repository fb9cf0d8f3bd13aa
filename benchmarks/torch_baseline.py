"""The PyTorch baseline: a plain UFM loop written the way a researcher would.

SupCon loss in the reference formula (HobbitLong/SupContrast, one view, base temperature = tau,
multiplied by n to give docs/theory.md's "sum" reduction), free embeddings H (n, d) as a leaf tensor, Adam,
and projection of every row back to the unit sphere after each step. Lives in benchmarks/ only:
PyTorch is never a runtime or test dependency of ufm-scl (``pip install .[bench]``).
"""

from __future__ import annotations

import time

import numpy as np


def supcon_sum(features, labels, temperature: float):
    """Reference SupCon (mean over anchors) times n: docs/theory.md's sum reduction. features (n, d),
    labels (n,) int tensor. Returns a scalar tensor."""
    import torch
    n = features.shape[0]
    labels = labels.view(-1, 1)
    mask = torch.eq(labels, labels.T).to(features.dtype)
    anchor_dot_contrast = features @ features.T / temperature
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    logits_mask = 1.0 - torch.eye(n, dtype=features.dtype, device=features.device)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mask_pos_pairs = mask.sum(1)
    mask_pos_pairs = torch.where(mask_pos_pairs < 1e-6, torch.ones_like(mask_pos_pairs), mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
    return -mean_log_prob_pos.mean() * n


MILESTONES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def run(H0: np.ndarray, labels: np.ndarray, tau: float, optimum: float, target: float = 1e-6,
        lr: float = 0.1, max_steps: int = 20000, max_seconds: float = 120.0,
        threads: int | None = None) -> dict:
    """Adam + row projection from H0 (n, d) until the loss is within ``target`` relative of
    ``optimum`` (the loss is the one computed for the step, at the iterate before the update).

    Returns {"reached", "steps", "seconds" (to the target, or to the stop), "seconds_per_step",
    "final_gap", "milestones" {gap: seconds to first reach it}}. float64 on the CPU.
    """
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    H = torch.tensor(H0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(labels, dtype=torch.long)
    opt = torch.optim.Adam([H], lr=lr)
    gap = float("inf")
    t0 = time.perf_counter()
    step = 0
    reached = False
    milestones: dict[float, float] = {}
    while step < max_steps:
        opt.zero_grad()
        loss = supcon_sum(H, y, tau)
        gap = abs(loss.item() - optimum) / abs(optimum)
        for m in MILESTONES:
            if gap <= m and m not in milestones:
                milestones[m] = time.perf_counter() - t0
        if gap <= target:
            reached = True
            break
        loss.backward()
        opt.step()
        with torch.no_grad():
            H /= H.norm(dim=1, keepdim=True)
        step += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    seconds = time.perf_counter() - t0
    return {"reached": reached, "steps": step, "seconds": seconds,
            "seconds_per_step": seconds / max(step, 1), "final_gap": gap, "milestones": milestones}
