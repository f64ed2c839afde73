"""Per-signature scores. PearsonΔ is the one that shows learning beyond the shared pattern.

All functions take (n, L) arrays of predictions and truths, one signature per row, and return
(n,) scores, so tables can average them per type and plots can show their distribution. The
exceptions: :func:`ks_d` compares pooled value distributions (one number), and
:func:`retrieval_summary` condenses the ranks of :func:`retrieval_ranks`.
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

    The training-mean signature scores 0 here however high its plain PCC is, and so does a
    prediction that differs from it only by float32 rounding (see :func:`snap_to_mean`).
    """
    return row_pearson(snap_to_mean(pred, train_mean) - train_mean, truth - train_mean)


def snap_to_mean(pred: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """float64 predictions; a row within float32 rounding of the training mean becomes the mean.

    Predictions arrive as float32 (a store, a model), the training mean here is float64: a
    model that predicts the mean (or shrinks to it, like ridge at its largest penalty) differs
    from it only by rounding, and PearsonΔ, blind to scale, would score that noise. A row whose
    largest deviation is within 16 float32 ulps of the signature scale (max |mean|) is the mean.
    """
    pred = np.asarray(pred, np.float64)
    mean = np.asarray(mean, np.float64)
    tol = 16 * np.finfo(np.float32).eps * max(float(np.abs(mean).max(initial=0.0)), 1e-30)
    with np.errstate(invalid="ignore"):
        near = np.abs(pred - mean).max(axis=1, initial=0.0) <= tol
    return np.where(near[:, None], mean, pred)



def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for telling ``positive`` (bool) items from the rest:
    the Mann-Whitney U over (positives x negatives), ties counted half; NaN without both kinds."""
    from scipy.stats import rankdata  # here: scipy.stats takes a second to import

    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not (n_pos and n_neg):
        return float("nan")
    r = rankdata(score)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def abs_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|PCC| per signature: the paper's 'mean absolute PCC' averages this."""
    return np.abs(row_pearson(a, b))


def row_mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error of each signature."""
    d = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return (d * d).mean(axis=1)


def ks_d(pred: np.ndarray, truth: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D of the pooled values (one number per type).

    It compares the value distributions only: 0 when the predictions have the spread and shape
    of the measurements, large for predictions shrunk towards the mean.
    """
    a = np.sort(np.asarray(pred, np.float64).ravel())
    b = np.sort(np.asarray(truth, np.float64).ravel())
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    # scipy.stats.ks_2samp(a, b).statistic without its p-value (seconds on 10^5 values):
    # the largest gap between the two empirical CDFs, evaluated at every observed value.
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def top_k_direction(pred: np.ndarray, truth: np.ndarray, k: int = 50) -> np.ndarray:
    """Fraction of each true signature's top-``k`` landmarks by |value| whose sign the prediction gets right.

    A zero on either side counts as a disagreement unless both are zero. Ties in |value| are
    broken by landmark order (a stable sort), so the result is deterministic.
    """
    pred = np.asarray(pred, np.float64)
    truth = np.asarray(truth, np.float64)
    k = min(k, truth.shape[1])
    if k == 0:
        return np.zeros(len(truth))
    top = np.argsort(-np.abs(truth), axis=1, kind="stable")[:, :k]
    agree = np.sign(np.take_along_axis(pred, top, 1)) == np.sign(np.take_along_axis(truth, top, 1))
    return agree.mean(axis=1)


def _standardise_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def retrieval_ranks(pred: np.ndarray, truth: np.ndarray, center: np.ndarray | None = None,
                    true_index: np.ndarray | None = None, block: int = 1024) -> np.ndarray:
    """Rank of the true signature among all ``truth`` rows by Pearson similarity to each prediction.

    Row i of ``pred`` is the prediction for the gene of row ``true_index[i]`` of ``truth``
    (default: row i). For each i, the truth rows are ranked by PCC(pred_i, truth_j), best first;
    the rank of the true row is returned (1 = the true gene is the most similar). Ties count
    half (the mid-rank), so a constant prediction gets the chance rank (n + 1) / 2. With
    ``center`` (e.g. the training mean), both sides have it subtracted first: similarity of the
    perturbation-specific parts (the similarity PearsonΔ measures).
    """
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    if center is not None:
        c = np.asarray(center, np.float64)
        p, t = p - c, t - c
    p, t = _standardise_rows(p), _standardise_rows(t)
    true_index = np.arange(len(p)) if true_index is None else np.asarray(true_index, np.int64)
    if true_index.shape != (len(p),) or (len(p) and (true_index.min() < 0 or true_index.max() >= len(t))):
        raise ValueError("true_index must hold one row of truth per prediction")
    ranks = np.empty(len(p))
    for lo in range(0, len(p), block):
        s = p[lo:lo + block] @ t.T  # (b, n) PCCs
        own = s[np.arange(len(s)), true_index[lo:lo + block]][:, None]
        # float noise must not turn an exact tie (a constant prediction) into a strict order
        tol = 1e-12
        greater = (s > own + tol).sum(axis=1)
        ties = (np.abs(s - own) <= tol).sum(axis=1) - 1
        ranks[lo:lo + block] = 1 + greater + ties / 2
    return ranks


def retrieval_summary(ranks: np.ndarray) -> dict[str, float]:
    """Median rank and top-1 / top-10 hit rates of :func:`retrieval_ranks`."""
    ranks = np.asarray(ranks, np.float64)
    if len(ranks) == 0:
        return {"retrieval_median_rank": float("nan"), "retrieval_top1": float("nan"),
                "retrieval_top10": float("nan")}
    return {"retrieval_median_rank": float(np.median(ranks)),
            "retrieval_top1": float((ranks <= 1).mean()),
            "retrieval_top10": float((ranks <= 10).mean())}


def mean_se(x: np.ndarray) -> float:
    """Standard error of the mean of ``x`` (NaN under two values)."""
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def paired_lead(model: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """(mean, s.e.) of the per-gene difference model - base of one per-signature score, over
    the genes both predict. Paired: the two scores of one gene move together (an easy gene is
    easy for both), so this s.e. can be several times smaller than either score's own, and it
    is the one that says whether a lead is real."""
    d = (model - base)[np.isfinite(model) & np.isfinite(base)]
    return (float(d.mean()) if len(d) else float("nan")), mean_se(d)
