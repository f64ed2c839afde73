"""The chromosome-arm effect: a CRISPR knock-out lowers the landmarks on its own chromosome arm.

Cas9's double-strand break often loses the piece of the arm beyond the cut (toward the
telomere) or the whole chromosome in some cells (Lazar et al., Nat Genet 2024, "proximity
bias"), so the landmarks there read lower. On the real example's training split (2026-12-07, a
script), in landmark sds, mean over genes of each gene's mean over its landmarks of the class:
CRISPR distal (same arm, beyond the target) -0.62 +- 0.04 over 233 genes, proximal (same arm,
toward the centromere) within 1 Mb -0.65 +- 0.10, farther -0.20 +- 0.03, other arm -0.12 +-
0.02; its valid genes the same (-0.52 / -0.82 / -0.25 / -0.15). RNAi and over-expression
show nothing (all under 2 s.e.). Nothing the model reads says where a gene sits, and the
trained model's predictions held none of it (mean predicted z -0.01 in every class); added to
its cross-validated predictions (the effect fitted on each fold's training genes) it raised
CRISPR's PearsonDelta from 0.106 to 0.132 (+0.026 +- 0.009 paired) and PCC 0.682 -> 0.685.

Fitted in closed form per type and class, as :mod:`tnfast.own_effect` is: z, the mean over
training genes with landmarks of the class of their mean deviation there in landmark sds; on
when at least ``MIN_GENES`` genes put it more than ``MIN_T`` standard errors from 0. Applied
after the shrink, added to the prediction (the model's deviation there is kept).

Trade-off: four classes per type, not a curve over distance or a term per gene: the loss
spans whole arms at about one level (distal -0.88 within 1 Mb, -0.60 at 1-10 Mb, -0.57
beyond; a fifth class for distal within 1 Mb added +0.0003 +- 0.0003 to the CRISPR
PearsonDelta above), and which cells lost the arm is chance, not something the inputs could
tell. Its size is the least-squares one: half of it scored 0.134 there (PCC 0.684), level.
A pair at distance 0 is the gene itself (the own-landmark effect's entry) and has no class.
"""

from __future__ import annotations

import numpy as np

from .data.bundle import Locations
from .own_effect import effect_record

__all__ = ["CLASSES", "NEAR_BP", "arm_effect", "location_codes", "pair_classes"]

CLASSES = ("distal", "proximal_1mb", "proximal", "other_arm")
NEAR_BP = 1_000_000  # proximal landmarks this close to the target fall like distal ones


def location_codes(genes: Locations, landmarks: Locations) -> tuple[np.ndarray, ...]:
    """Integer codes of both sets, comparable with each other: per set (chromosome, start, arm)
    int64 arrays, -1 where unknown (arm p = 0, q = 1; chromosome by its name's rank)."""
    names = sorted({str(c) for c in np.concatenate([genes.chromosome, landmarks.chromosome]).tolist()} - {""})
    code = {c: i for i, c in enumerate(names)}
    out = []
    for loc in (genes, landmarks):
        out.append(np.fromiter((code.get(str(c), -1) for c in loc.chromosome), np.int64, count=len(loc.chromosome)))
        out.append(np.asarray(loc.start, np.int64))
        out.append(np.fromiter(({"p": 0, "q": 1}.get(str(a), -1) for a in loc.arm), np.int64, count=len(loc.arm)))
    return tuple(out)


def pair_classes(chrom, start, arm, lm_chrom, lm_start, lm_arm):
    """Class index of every (gene, landmark) pair, -1 for none: genes' codes (n, 1), landmarks'
    (1, L) (or any broadcasting shapes), numpy arrays or torch tensors (only operators are used,
    so the model's buffers and the baselines share this). Returns int (n, L)."""
    known = (chrom >= 0) & (arm >= 0) & (lm_arm >= 0) & (start >= 0) & (lm_start >= 0)
    same = known & (chrom == lm_chrom) & (start != lm_start)
    same_arm = same & (arm == lm_arm)
    distal = same_arm & ((lm_start < start) == (arm == 0))  # toward the telomere: p lower, q higher
    proximal = same_arm & ~distal
    near = abs(lm_start - start) < NEAR_BP
    return (-1 + 1 * distal + 2 * (proximal & near) + 3 * (proximal & ~near)
            + 4 * (same & ~same_arm))


def arm_effect(deviation: np.ndarray, classes: np.ndarray) -> tuple[dict | None, np.ndarray | None]:
    """One type's effect from its training rows: ``deviation`` (n, L) from their mean (any
    units), ``classes`` (n, L) from :func:`pair_classes`. Returns the record (per class name
    ``n`` genes, ``z`` in landmark sds, its ``se``, whether it is ``on``; None when no row has
    a classed landmark) and, when any class is on, the (K, L) deviation a landmark of class k
    gets: z_k x the landmark's sd (zero rows for classes that are off; None when all are off)."""
    deviation = np.asarray(deviation, np.float64)
    if not (classes >= 0).any():
        return None, None
    sd = np.maximum(deviation.std(axis=0), 1e-12)
    z = deviation / sd
    record, shift = {}, np.zeros((len(CLASSES), deviation.shape[1]))
    for k, name in enumerate(CLASSES):
        hit = classes == k
        rows = np.flatnonzero(hit.any(axis=1))
        record[name], mean = effect_record((z[rows] * hit[rows]).sum(axis=1) / hit[rows].sum(axis=1))
        if record[name]["on"]:
            shift[k] = mean * sd
    return record, (shift if any(r["on"] for r in record.values()) else None)
