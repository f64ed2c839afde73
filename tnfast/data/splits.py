"""Train/valid/test assignment of measured genes, gene-disjoint across perturbation types.

A gene measured in several types sits in the same split in all of them, so no model can learn
a gene's RNAi signature in training and be scored on its CRISPR signature in test. Splits given
in files are honoured as given; a gene given a split in one type keeps it in the other types
unless a file says otherwise there.
"""

from __future__ import annotations

import numpy as np

from .bundle import SPLITS

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def assign_splits(
    measured: dict[str, np.ndarray],
    given: dict[str, dict[int, str]] | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split label per measured row.

    measured: type -> (n,) gene indices measured in that type.
    given: type -> {gene index: split} from split files.
    Returns type -> (n,) str array aligned with ``measured[type]``.
    """
    given = given or {}
    genes = np.unique(np.concatenate([g for g in measured.values()] or [np.zeros(0, np.int64)]))
    # Genes given a split anywhere keep it everywhere (first type in order wins a conflict).
    fixed: dict[int, str] = {}
    for t in measured:
        for g, s in given.get(t, {}).items():
            fixed.setdefault(int(g), s)
    free = np.array([g for g in genes.tolist() if g not in fixed], dtype=np.int64)
    rng = np.random.default_rng(seed)
    free = free[rng.permutation(len(free))]
    cuts = np.round(np.cumsum(fractions)[:-1] / np.sum(fractions) * len(free)).astype(int)
    by_gene = dict(fixed)
    for name, part in zip(SPLITS, np.split(free, cuts)):
        by_gene.update(dict.fromkeys(part.tolist(), name))
    out = {}
    for t, g in measured.items():
        own = given.get(t, {})
        out[t] = np.array([own.get(int(x), by_gene[int(x)]) for x in g.tolist()], dtype="<U5")
    return out
