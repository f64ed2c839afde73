"""The signature loss of the paper: (1 - beta) MSE + beta (1 - Pearson per signature), beta 0.1.

Computed in the scaled space (per landmark standardised), where the shared pattern every L1000
signature carries is already subtracted: its Pearson term therefore rewards the gene-specific
part (close to the PearsonDelta we report) instead of the shared pattern that the training mean
already gets right.
"""

from __future__ import annotations

import torch

__all__ = ["row_pearson", "signature_loss"]


def row_pearson(pred: torch.Tensor, truth: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(n,) Pearson correlation of each row of pred (n, L) with the same row of truth.
    A constant row gives 0 (eps in the denominator), not NaN."""
    p = pred - pred.mean(dim=-1, keepdim=True)
    t = truth - truth.mean(dim=-1, keepdim=True)
    return (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1) + eps)


def signature_loss(pred: torch.Tensor, truth: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """(1 - beta) * mean squared error + beta * (1 - mean per-row Pearson); pred, truth (n, L)."""
    pred, truth = pred.float(), truth.float()
    mse = (pred - truth).pow(2).mean()
    return (1.0 - beta) * mse + beta * (1.0 - row_pearson(pred, truth).mean())
