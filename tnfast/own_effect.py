"""The own-landmark effect: perturbing a gene that is itself one of the landmarks moves that
landmark's own readout.

In L1000 a knockdown of a landmark gene lowers its own measured expression by several of that
landmark's standard deviations: on the real example's train and valid signatures (2026-12-07, a
script) RNAi by z = -5.4 on average over its 55 landmark genes (98% below -1) and CRISPR by -6.5 over
14. Over-expression is not consistent (mean +1.4, median -0.2 over 29 genes: a construct often
lacks the UTR the probe reads). Nothing the model reads tells it which landmark a gene is, and
it is one of 978 entries, so training does not find it; yet in a 978-vector one entry at -5 sd
is a large part of the gene-specific signal. A ridge on the example's features with this
effect added scored PearsonΔ +0.030 ± 0.003 higher on RNAi (on the landmark genes 0.011 ->
0.146) and +0.007 ± 0.002 on CRISPR in 5-fold cross-validation (3 repeats, a script).

Fitted in closed form on the training split, per type: z, the mean over the training genes that
are landmarks of their own landmark's deviation from the training mean in that landmark's
training standard deviations. A type keeps it only when at least ``MIN_GENES`` such genes put z
more than ``MIN_T`` standard errors from 0; else it is off (the synthetic default has no such
effect, so it stays off there). Applied last, after the shrink: a gene's prediction at its own
landmark becomes the training mean + z standard deviations.

Its size is the least-squares one (the mean), not one tuned for PearsonΔ: in the same script,
scaling it by 0.5 / 0.75 / 1.5 / 2 moved PearsonΔ by -0.003 / -0.001 / +0.001 / +0.002 on RNAi
(PearsonΔ saturates once the entry dominates the predicted deviation) while PCC peaked at 0.75-1
and fell beyond (-0.0007 at 1.5, -0.0024 at 2); CRISPR alike.

Trade-off: one number per type, not one per gene or a learned term: the effect's size varies by
gene (knock-down efficiency), but nothing in the inputs predicts that variation, and a few dozen
genes per type estimate one mean well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_GENES", "MIN_T", "effect_record", "landmark_of_genes", "own_effect"]

MIN_GENES = 5  # fewer training genes that are landmarks: the type's effect stays off
MIN_T = 3.0  # |z| must exceed this many standard errors of the mean


def landmark_of_genes(genes: Sequence[str], landmarks: Sequence[str]) -> np.ndarray:
    """(n_genes,) int64: the index in ``landmarks`` of each gene id, -1 where it is none."""
    where = {str(g): i for i, g in enumerate(landmarks)}
    return np.fromiter((where.get(str(g), -1) for g in genes), np.int64, count=len(genes))


def own_effect(deviation: np.ndarray, own: np.ndarray) -> tuple[dict | None, np.ndarray | None]:
    """One type's effect from its training rows: ``deviation`` (n, L) from their mean (any
    units), ``own`` (n,) each row's gene's landmark or -1. Returns the record (``n`` landmark
    genes, ``z`` in landmark sds, its ``se``, whether it is ``on``; None without landmark
    genes) and, when on, the (L,) deviation a gene whose own landmark is l gets there: z x
    landmark l's sd over the rows (None when off)."""
    hit = np.flatnonzero(own >= 0)
    if len(hit) == 0:
        return None, None
    sd = np.maximum(np.asarray(deviation, np.float64).std(axis=0), 1e-12)
    lm = own[hit]
    record, mean = effect_record(deviation[hit, lm] / sd[lm])
    return record, (mean * sd if record["on"] else None)


def effect_record(z: np.ndarray) -> tuple[dict, float]:
    """The record of a landmark effect from its per-gene values ``z`` (n,) in landmark sds:
    ``n``, ``z`` their mean, its ``se``, and ``on`` (at least ``MIN_GENES`` genes and the mean
    more than ``MIN_T`` standard errors from 0); and the unrounded mean. Shared by this effect
    and :mod:`tnfast.arm_effect`, so both follow one rule."""
    n = len(z)
    mean = float(z.mean()) if n else 0.0
    se = float(z.std(ddof=1)) / n ** 0.5 if n > 1 else float("inf")
    on = n >= MIN_GENES and abs(mean) > MIN_T * se
    return {"n": n, "z": round(mean, 4), "se": round(se, 4), "on": bool(on)}, mean
