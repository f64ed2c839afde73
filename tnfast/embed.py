"""Multiplex network embedding: the leading eigenvectors of each layer's regularised normalised
adjacency.

Genes of one module share the top eigenvectors of S = D^-1/2 A D^-1/2 (in a planted partition
they are the module indicators), so a linear model on them reads module membership. A random
projection propagated a few hops (FastRP, what tnfast used before) keeps a blurred sketch of
it: on the synthetic default's test split the ridge on 32 eigenvectors per layer scores
PearsonΔ 0.452 / 0.455 / 0.421 (RNAi / CRISPR / OE) where 64 propagated projections per layer
gave 0.352 / 0.344 / 0.338, and partly converged subspace iteration (40 products) 0.44.

The degrees are regularised: S_tau = (D + tau)^-1/2 A (D + tau)^-1/2 with tau a fixed fraction
of the layer's mean degree (regularised spectral clustering, Chaudhuri et al. 2012, Qin & Rohe
2013). With power-law degrees the plain S spends its leading eigenvectors on the periphery: a
small component, even one isolated edge, has eigenvalue exactly 1, and the rows of genes with
a handful of edges are mostly noise. tau damps both, and the eigenvectors go to the modules.
Measured on the synthetic default (64 per layer + features, test split), as the inputs
ceiling of `tnfast evaluate` (a ridge fitted to the noise-free truth of every other gene) and
as a ridge on the training signatures: tau = 0 gave 0.523 / 0.525 / 0.490 and 0.434 / 0.440 /
0.398; 0.1 x the mean degree 0.539 / 0.541 / 0.502 and 0.448 / 0.457 / 0.405; 0.3 x 0.547 /
0.549 / 0.512 and 0.460 / 0.467 / 0.416; 0.6 x 0.544 / 0.549 / 0.511 and 0.459 / 0.465 /
0.415; 1 x 0.542 / 0.547 / 0.508 and 0.453 / 0.463 / 0.410; 3 x and 10 x lower again (scripts,
2026-12-02).

Solved by LOBPCG, a block method, not by Lanczos (ARPACK): co-annotation layers (Pfam, a
cytoband, small GO terms) are unions of cliques, and cliques of one size share one eigenvalue
(1 without tau, (s - 1) / (s - 1 + tau) with it), where ARPACK stops without converging; a
block method returns a basis of that space (from a seeded random start: a random projection
of the component indicators, as FastRP gives).
The solver's own basis is not reproducible (signs, and rotations inside a degenerate
eigenspace, change with BLAS threads); the returned one is fixed by the subspace and the seed.
Which subspace is found can still differ in the last bits between CPUs, and where the k-th
eigenvalue is degenerate with the next one, by more: so a run saves the embedding it was
trained with (tnfast.runs.save_embedding) and prediction never recomputes it.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import lobpcg
from threadpoolctl import threadpool_limits

from .data.csr import CSR

DENSE_MAX = 1500  # a layer with at most this many genes with edges is solved by dense eigh
LOBPCG_ITERS = 30  # the ridge above scores the same after 30 and 100 iterations
TIE = 1e-6  # eigenvalues of S (in [-1, 1]) this close are one eigenspace
DEGREE_REG = 0.5  # tau / the layer's mean degree (see above: 0.3-0.6 scored alike)


def layer_embedding(csr: CSR, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) float32: the ``dim`` eigenvectors of largest eigenvalue of S = (D + tau)^-1/2 A
    (D + tau)^-1/2 over the genes with edges (A symmetrised: (A + A^T) / 2; tau = DEGREE_REG x
    their mean degree), scaled so that a row's squared
    norm averages 1 over those genes; 0 for genes without edges, and 0 columns when the layer
    has fewer such genes than ``dim``. Draws one (genes with edges, dim) normal start from ``rng``."""
    # One BLAS thread: the products are small (genes x 3·dim blocks) and, on cores another
    # process also uses, OpenBLAS's spinning threads made the complex layer of the synthetic
    # default take 12.4 s instead of 0.57 s (2 cores, 2026-12-01). It also makes the result
    # independent of the thread count.
    with threadpool_limits(1, user_api="blas"):
        return _layer_embedding(csr, dim, rng)


def _layer_embedding(csr: CSR, dim: int, rng: np.random.Generator) -> np.ndarray:
    a = csr.to_scipy().astype(np.float64)
    a = ((a + a.T) * 0.5).tocsr()
    deg = np.asarray(a.sum(axis=1)).ravel()
    idx = np.flatnonzero(deg > 0)
    m = len(idx)
    out = np.zeros((csr.n, dim), np.float32)
    if m == 0 or dim == 0:
        return out
    start = rng.standard_normal((m, dim))
    inv = sp.diags(1.0 / np.sqrt(deg[idx] + DEGREE_REG * deg[idx].mean()))
    s = (inv @ a[idx][:, idx] @ inv).tocsr()
    k = min(dim, m)
    if m <= max(DENSE_MAX, 5 * dim):  # LOBPCG wants many more rows than vectors
        w, v = np.linalg.eigh(s.toarray())
        w, v = w[::-1], v[:, ::-1]
        # eigenvalues tied with the k-th (small layers: many components share eigenvalue 1): which
        # k - (those above) of the tied eigenspace to take is the start block's projection onto it
        tied = np.abs(w - w[k - 1]) <= TIE
        above = w > w[k - 1] + TIE
        c = v[:, tied]
        vec = np.hstack([v[:, above], c @ (c.T @ start[:, :k - int(above.sum())])])
    else:
        with warnings.catch_warnings():  # "not reaching the requested tolerance": the basis is what counts
            warnings.simplefilter("ignore", UserWarning)
            vec = lobpcg(s, start, largest=True, maxiter=LOBPCG_ITERS, tol=1e-5)[1]
    # The solver's basis of the subspace (its rotation inside a degenerate eigenspace, its signs)
    # changes with BLAS threads and CPUs; this one is fixed by the subspace alone: the start
    # block projected onto it, orthonormalised with a positive diagonal of R.
    q, r = np.linalg.qr(vec @ (vec.T @ start[:, :k]))
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    out[idx, :k] = q * np.sqrt(m / dim)
    return out


def multiplex_embedding(networks: dict[str, CSR], dim: int = 64, seed: int = 0) -> np.ndarray:
    """(n, len(networks) * dim) float32, the layers' embeddings side by side, ``rng =
    default_rng(seed)`` drawn layer after layer."""
    rng = np.random.default_rng(seed)
    return np.concatenate([layer_embedding(c, dim, rng) for c in networks.values()], axis=1)
