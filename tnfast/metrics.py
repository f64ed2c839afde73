"""Per-signature scores. PearsonΔ is the one that shows learning beyond the shared pattern.

All functions take (n, L) arrays of predictions and truths, one signature per row, and return
(n,) scores, so tables can average them per type and plots can show their distribution.
"""

from __future__ import annotations

import numpy as np


def row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``; 0 for a constant row."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    num = (a * b).sum(axis=1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def pearson_delta(pred: np.ndarray, truth: np.ndarray, train_mean: np.ndarray) -> np.ndarray:
    """PCC of (pred - training mean) vs (truth - training mean), per signature.

    The training-mean signature scores 0 here however high its plain PCC is.
    """
    return row_pearson(pred - train_mean, truth - train_mean)
