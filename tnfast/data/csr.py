"""Undirected network layers as CSR: symmetrised, deduplicated, without self-loops.

Every network that enters a bundle goes through :func:`build_csr`, so the kernels and the model
can rely on one invariant: row i lists each neighbour of i once, sorted, with a float32 weight
> 0, and j is in row i exactly when i is in row j (with the same weight).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class CSR(NamedTuple):
    """One network layer over the bundle's gene universe (n = len(indptr) - 1)."""

    indptr: np.ndarray  # (n+1,) int64
    indices: np.ndarray  # (nnz,) int32, sorted within each row
    weights: np.ndarray  # (nnz,) float32, > 0

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def degrees(self) -> np.ndarray:
        return np.diff(self.indptr)

    def to_scipy(self):
        """As a scipy.sparse.csr_matrix (imported here: every command loads bundles, few need scipy)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.weights, self.indices, self.indptr), shape=(self.n, self.n))


def build_csr(src: np.ndarray, dst: np.ndarray, n: int, weight: np.ndarray | None = None) -> CSR:
    """Undirected CSR from an edge list of node indices in [0, n).

    Edges are taken in both directions; self-loops are dropped; an edge given several times
    (in either direction) keeps its largest weight. Weights must be finite and > 0.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    w = np.ones(len(src), np.float32) if weight is None else np.asarray(weight, np.float32)
    keep = src != dst
    src, dst, w = src[keep], dst[keep], w[keep]
    # One key per unordered pair; max over duplicates via a sort on (key, weight).
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    order = np.lexsort((-w, key))
    key, w = key[order], w[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    key, w = key[first], w[first]
    lo, hi = key // n, key % n
    rows = np.concatenate([lo, hi])
    cols = np.concatenate([hi, lo])
    ww = np.concatenate([w, w])
    order = np.lexsort((cols, rows))
    rows, cols, ww = rows[order], cols[order], ww[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return CSR(indptr, cols.astype(np.int32), ww.astype(np.float32))
