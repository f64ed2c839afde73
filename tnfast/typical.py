"""The typical deviation: the direction from the training mean towards where most signatures of
a type lie.

The training mean is the constant of least squared error, but PearsonΔ scores the direction of
each signature's deviation from it, one signature at a time, whatever its size. Where signature
sizes vary a lot, a few strong signatures pull the mean, and most signatures, the held-out ones
among them, then lie on one side of it: the mean of the deviations is zero, the mean of the
*unit* deviations is not, and it points from the mean towards a robust centre of the
signatures. Much of this is the mean's own sampling error rather than a direction the
perturbations share: with the real example's OE deviations given random signs (no shared
direction left) the held-out score keeps about two thirds of its size, and with sizes made equal
it vanishes (a review's script, 2026-12-07). Either way it is what PearsonΔ, taken around a
training mean, rewards on genes the mean never saw; it shrinks with more training signatures
and with more even sizes. On the real example OE's held-out score is 2-4 standard errors above
0, RNAi's and CRISPR's under 2.5 (docs/results.md, "With the typical deviation").

It is the same for every gene: nothing gene-specific. Hence also a baseline
(:func:`typical_baseline`), shown beside the model in every evaluation, so that a model using it
is credited only with what it predicts beyond it.

Fitted in closed form on the training signatures of one type, cross-fitted over ``FOLDS``
folds of them (each fold's genes scored with the mean, the direction and the size unit of the
others):
- the evidence: each held-out gene's PearsonΔ with the direction; the mean and its standard
  error (genes of one fold share one fitted direction, so this s.e. is somewhat optimistic);
- the size: the step along the direction, in units of the median size of a training deviation
  (``SIZES``), that maximises the held-out genes' mean PCC. PearsonΔ is blind to the size, PCC
  and MSE are not: the size is what a step away from the mean is worth there.
The model adds it (:mod:`tnfast.model.typical`) only when the held-out PearsonΔ is more than
``MIN_T`` standard errors above 0 (the rule of the landmark effects) and the size is above 0;
the baseline always adds it, at least at the smallest size, so that it shows what the direction
alone scores. The rule asks whether the term raises held-out PearsonΔ around a training mean,
not whether the perturbations share a direction.

Trade-off: one direction per type, sized for the training mean rather than for the model's
prediction it is added to (the training genes' model predictions are fitted values, and a
member's valid split holds a few dozen genes): it costs little where the model's own deviation
is strong (the synthetic default: test PearsonΔ −0.0002 on RNAi, PCC −0.00003) and cannot
overfit beyond one (L,) vector per type.
"""

from __future__ import annotations

import numpy as np

from .metrics import row_pearson
from .own_effect import MIN_T

__all__ = ["FOLDS", "MIN_STEP", "SIZES", "typical_baseline", "typical_direction", "typical_fit"]

FOLDS = 10  # cross-fitting folds; a type with fewer than 2 x FOLDS training signatures gets none
SIZES = np.linspace(0.0, 1.0, 101)  # steps along the direction, in median deviation sizes
MIN_STEP = float(SIZES[1])  # the baseline's least step, where the best one is 0


def _centred(d: np.ndarray) -> np.ndarray:
    return d - d.mean(axis=1, keepdims=True)


def typical_direction(y: np.ndarray) -> np.ndarray:
    """(L,) unit vector: the mean of the rows' unit deviations from their mean (each row centred
    over its entries, as Pearson's r centres it); zero where every row is the mean."""
    d = _centred(np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(axis=0))
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    u = np.divide(d, norm, out=np.zeros_like(d), where=norm > 0).mean(axis=0)
    size = np.linalg.norm(u)
    return u / size if size > 0 else u


def _pcc_by_size(base: np.ndarray, step: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(len(SIZES),) mean over rows of PCC(base + c step, y) for each c in SIZES: from the
    rows' second moments, not one correlation per size."""
    b, s, t = _centred(base), _centred(step), _centred(y)
    bb, ss, bs = (b * b).sum(1), (s * s).sum(1), (b * s).sum(1)
    bt, st, tt = (b * t).sum(1), (s * t).sum(1), (t * t).sum(1)
    c = SIZES[:, None]
    var = bb + 2 * c * bs + c * c * ss
    den = np.sqrt(np.maximum(var, 0) * tt)
    return np.divide(bt + c * st, den, out=np.zeros_like(den), where=den > 0).mean(axis=1)


def typical_fit(y: np.ndarray) -> tuple[dict | None, np.ndarray | None]:
    """One type's typical deviation from its training signatures ``y`` (n, L), in their units.

    Returns the record (``n``; the held-out ``pearson_delta``, its ``se``; ``size`` in median
    deviations; whether the model turns it ``on``; None with under 2 x FOLDS rows) and the (L,)
    deviation the baseline adds to the training mean (None when the direction is zero)."""
    y = np.asarray(y, np.float64)
    if not np.isfinite(y).all():
        raise ValueError("typical_fit: the training signatures hold non-finite values")
    n = len(y)
    if n < 2 * FOLDS:
        return None, None
    fold = np.arange(n) % FOLDS
    base = np.empty_like(y)  # each row's mean and step (direction x size unit), from the other folds
    step = np.empty_like(y)
    for f in range(FOLDS):
        held, rest = fold == f, fold != f
        base[held] = y[rest].mean(axis=0)
        step[held] = typical_direction(y[rest]) * _unit(y[rest])
    pd = row_pearson(step, y - base)
    pcc = _pcc_by_size(base, step, y)
    size = round(float(SIZES[int(np.argmax(pcc))]), 4)  # 0.47, not 0.47000000000000003
    se = float(pd.std(ddof=1) / np.sqrt(n))
    on = bool(pd.mean() > MIN_T * se and size > 0)
    record = {"n": n, "pearson_delta": round(float(pd.mean()), 4), "se": round(se, 4), "size": size, "on": on}
    direction = typical_direction(y)
    if not direction.any():
        return record, None
    return record, max(size, MIN_STEP) * _unit(y) * direction


def _unit(y: np.ndarray) -> float:
    """The median size of the rows' (centred) deviations from their mean: the unit of SIZES."""
    return float(np.median(np.linalg.norm(_centred(y - y.mean(axis=0)), axis=1)))


def typical_baseline(y_train: np.ndarray, n: int) -> tuple[np.ndarray | None, dict | None]:
    """(n, L) float64: the training mean plus :func:`typical_fit`'s deviation, at least the
    smallest size; and the fit's record. (None, record) where it has none."""
    record, dev = typical_fit(y_train)
    if dev is None:
        return None, record
    mean = np.asarray(y_train, np.float64).mean(axis=0)
    return np.broadcast_to(mean + dev, (n, len(mean))).copy(), record
