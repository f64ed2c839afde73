"""The baselines every model is shown beside: what it takes to be better than trivial.

Each baseline learns only from the training signatures it is given (hyper-parameters from the
valid signatures it is given) and never sees the signature it predicts: the caller passes
training pools that exclude the evaluated genes. All return (n, L) predictions, float64 where
they are averages (so a fallback to the training mean is exactly the mean).

- training mean: the signature shared by all perturbations of a type;
- ridge: :func:`tnfast.ridge.fit_ridge` on the gene inputs (network embedding + features);
- kNN: the average training signature of the k genes most cosine-similar in the same inputs,
  k chosen by valid MSE (like ridge's penalty);
- ridge + residual diffusion: the ridge, corrected as TranscriptionNet is after training
  (:mod:`tnfast.model.smoothing`: its training residuals and signatures of every type diffused
  over the networks, mixed by factors fitted on valid), so the model's own correction step is
  credited to neither side;
- ridge + landmark effects: the ridge, with the chromosome-arm shift added and each landmark
  gene's own landmark set as TranscriptionNet does last (:mod:`tnfast.arm_effect`,
  :mod:`tnfast.own_effect`, fitted on the ridge's training pool), so those steps are credited
  to neither side; only for types where an effect is on;
- network average: per layer, the edge-weighted mean of the measured training signatures of
  the gene's neighbours; averaged over the layers where it has any; the training mean where it
  has none (label propagation, one hop: the classic answer a network model must beat);
- other type: the same gene's measured signature of another type, moved onto this type's
  training mean (its deviation from its own type's training mean, added to this type's mean);
- oracle: the noise-free truth of synthetic bundles (the ceiling), taken by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .arm_effect import arm_effect, pair_classes
from .data.csr import CSR
from .own_effect import own_effect
from .ridge import Ridge, fit_ridge

KNN_KS = (1, 3, 5, 10, 20, 50, 100)
# Which other type stands in for a type, in order of preference (CRISPR knock-outs and RNAi
# knock-downs both remove the gene; over-expression is the other direction).
OTHER_TYPE_ORDER = {"RNAi": ("CRISPR", "OE"), "CRISPR": ("RNAi", "OE"), "OE": ("RNAi", "CRISPR")}


def training_mean(y_train: np.ndarray) -> np.ndarray:
    """(L,) float64 mean of the training signatures."""
    return np.asarray(y_train, np.float64).mean(axis=0)


def mean_baseline(y_train: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(training_mean(y_train), (n, np.shape(y_train)[1])).copy()


def ridge_baseline(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray | None,
                   y_valid: np.ndarray | None, x_eval: np.ndarray,
                   refit: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, Ridge]:
    """Ridge on the gene inputs, the penalty chosen by valid MSE, then, given ``refit`` (x, y),
    fitted again on those rows with that penalty. Returns (predictions, model)."""
    model = fit_ridge(x_train, y_train, x_valid, y_valid)
    if refit is not None:
        model = fit_ridge(*refit, alphas=(model.alpha,))
    return model.predict(x_eval), model


class RidgeFit(NamedTuple):
    """One type's fitted ridge and the signatures it learnt from and was tuned on."""

    ridge: Ridge
    train_genes: np.ndarray
    y_train: np.ndarray
    valid_genes: np.ndarray
    y_valid: np.ndarray


def landmark_effects_baseline(pred: np.ndarray, genes: np.ndarray, train_genes: np.ndarray, y_train: np.ndarray,
                              own: np.ndarray, codes: tuple[np.ndarray, ...] | None
                              ) -> tuple[np.ndarray | None, dict]:
    """``pred`` (n, L) of gene indices ``genes`` with the landmark effects TranscriptionNet adds
    last, fitted on (``train_genes``, ``y_train``): the chromosome-arm shift
    (:mod:`tnfast.arm_effect`; ``codes`` its :func:`~tnfast.arm_effect.location_codes` of
    every gene and landmark, None without locations), then each landmark gene's own landmark
    (``own``: every gene's, :func:`tnfast.own_effect.landmark_of_genes`) set to the training
    mean + the type's effect. Returns (predictions, or None when no effect is on; the records
    of the fits, ``own_landmark`` and ``arm_effect``, None where nothing was fitted)."""
    mean = training_mean(y_train)
    dev = np.asarray(y_train, np.float64) - mean
    records: dict = {"own_landmark": None, "arm_effect": None}
    out = np.array(pred, np.float64)
    changed = False
    if codes is not None:
        def classes(rows):
            return pair_classes(*(c[rows][:, None] for c in codes[:3]), *(c[None] for c in codes[3:]))

        records["arm_effect"], shift = arm_effect(dev, classes(train_genes))
        if shift is not None:
            cls = classes(genes)
            out += np.where(cls >= 0, shift[np.maximum(cls, 0), np.arange(shift.shape[1])], 0.0)
            changed = True
    records["own_landmark"], value = own_effect(dev, own[train_genes])
    if value is not None:
        rows = np.flatnonzero(own[genes] >= 0)
        lm = own[genes[rows]]
        out[rows, lm] = mean[lm] + value[lm]
        changed = True
    return (out if changed else None), records


def ridge_residual_baseline(graph, x: np.ndarray, fits: Mapping[str, RidgeFit], eval_genes: Mapping[str, np.ndarray],
                            rank: int) -> dict[str, tuple[np.ndarray, dict]]:
    """Per type of ``fits``: the ridge plus its residual correction at its ``eval_genes``, fitted
    as the model's (:class:`tnfast.model.smoothing.ResidualCorrection`: every type's training
    residuals and signatures diffused over the networks, mixed by factors chosen on valid; no
    correction without valid genes). ``graph``: the bundle's
    :class:`tnfast.model.graph.MultiplexGraph`; ``x``: every gene's inputs. Returns per type
    (predictions (n, L), what the fit chose)."""
    import torch

    from .model.smoothing import ResidualCorrection

    def as_t(a, dtype=np.float32) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype))

    def residual(f: RidgeFit, genes: np.ndarray, y: np.ndarray) -> torch.Tensor:
        return as_t(y) - as_t(f.ridge.predict(x[genes]))

    names = list(fits)
    n_lm = np.shape(next(iter(fits.values())).y_train)[1]
    rc = ResidualCorrection(graph.n_genes, rank, n_lm, len(names))
    rc.fit(graph, {i: (as_t(f.train_genes, np.int64), residual(f, f.train_genes, f.y_train),
                       as_t(f.y_train - training_mean(f.y_train))) for i, f in enumerate(fits.values())},
           {i: (as_t(f.valid_genes, np.int64), residual(f, f.valid_genes, f.y_valid))
            for i, f in enumerate(fits.values()) if len(f.valid_genes)})
    out = {}
    for i, t in enumerate(names):
        g = np.asarray(eval_genes[t], np.int64)
        correction = rc(torch.from_numpy(g))[:, i].numpy()
        out[t] = fits[t].ridge.predict(x[g]) + correction, rc.choice.get(i, {"channels": "none"})
    return out


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0), n[:, 0] > 0


def knn_neighbours(x_train: np.ndarray, x_query: np.ndarray, k_max: int,
                   block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(indices (q, k), valid (q,)): the ``k_max`` training rows most cosine-similar to each query.

    Training rows with an all-zero input vector (a gene with no network edges and no features)
    are never neighbours; queries with one have no neighbours (``valid`` false). Ties keep the
    training order (a stable sort), so the result is deterministic.
    """
    t, t_ok = _unit_rows(x_train)
    q, q_ok = _unit_rows(x_query)
    k_max = min(k_max, int(t_ok.sum()))
    idx = np.zeros((len(q), k_max), np.int64)
    for lo in range(0, len(q), block):
        s = q[lo:lo + block] @ t.T
        s[:, ~t_ok] = -np.inf
        idx[lo:lo + block] = np.argsort(-s, axis=1, kind="stable")[:, :k_max]
    return idx, q_ok & (k_max > 0)


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_query: np.ndarray, k: int) -> np.ndarray:
    """Average training signature of each query's ``k`` nearest genes (cosine); the mean where none."""
    idx, ok = knn_neighbours(x_train, x_query, k)
    return _knn_average(np.asarray(y_train, np.float64), idx, ok, k)


def _knn_average(y: np.ndarray, idx: np.ndarray, ok: np.ndarray, k: int) -> np.ndarray:
    out = np.broadcast_to(y.mean(axis=0), (len(idx), y.shape[1])).copy()
    k = min(k, idx.shape[1])
    if k > 0 and ok.any():
        # One sparse (queries x training) averaging matrix: no (q, k, L) intermediate.
        rows = np.repeat(np.arange(int(ok.sum())), k)
        w = sp.csr_matrix((np.full(len(rows), 1.0 / k), (rows, idx[ok, :k].ravel())),
                          shape=(int(ok.sum()), len(y)))
        out[ok] = w @ y
    return out


def knn_baseline(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray | None,
                 y_valid: np.ndarray | None, x_eval: np.ndarray, refit: tuple[np.ndarray, np.ndarray] | None = None,
                 ks=KNN_KS) -> tuple[np.ndarray, int]:
    """kNN average with k chosen by valid MSE (10 when there are no valid rows), the neighbours
    then taken from ``refit`` (x, y) when given. Returns (predictions, k)."""
    y = np.asarray(y_train, np.float64)
    ks = sorted({min(k, len(y)) for k in ks if k >= 1})
    k = min(10, len(y))
    if x_valid is not None and len(x_valid) and len(ks) > 1:
        idx, ok = knn_neighbours(x_train, x_valid, max(ks))
        errors = [((_knn_average(y, idx, ok, kk) - y_valid) ** 2).mean() for kk in ks]
        k = ks[int(np.argmin(errors))]
    if refit is not None:
        x_train, y = refit[0], np.asarray(refit[1], np.float64)
    return knn_predict(x_train, y, x_eval, k), k


def network_average(networks: Mapping[str, CSR], train_genes: np.ndarray, y_train: np.ndarray,
                    eval_genes: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Edge-weighted mean of the training signatures of each gene's neighbours, per layer, then over layers.

    Works on deviations from ``mean`` (default: the training mean) and adds it back, so a gene
    with neighbours in no layer gets the training mean. Returns (predictions (n, L), number of
    layers in which each gene has at least one measured training neighbour (n,)).
    """
    y = np.asarray(y_train, np.float64)
    mean = training_mean(y) if mean is None else np.asarray(mean, np.float64)
    dev = y - mean
    eval_genes = np.asarray(eval_genes, np.int64)
    train_genes = np.asarray(train_genes, np.int64)
    total = np.zeros((len(eval_genes), y.shape[1]))
    layers = np.zeros(len(eval_genes), np.int64)
    for csr in networks.values():
        a = csr.to_scipy()[eval_genes][:, train_genes].astype(np.float64)
        w = np.asarray(a.sum(axis=1)).ravel()
        has = w > 0
        if has.any():
            total[has] += np.asarray(a[has] @ dev) / w[has, None]
        layers += has
    return mean + total / np.maximum(layers, 1)[:, None], layers


def total_degree(networks: Mapping[str, CSR], n_genes: int) -> np.ndarray:
    """(n_genes,) number of edges of each gene summed over the layers."""
    deg = np.zeros(n_genes, np.int64)
    for csr in networks.values():
        deg += csr.degrees()
    return deg


def other_type_baseline(ptype: str, eval_genes: np.ndarray, mean: np.ndarray,
                        others: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        order: Mapping[str, tuple[str, ...]] = OTHER_TYPE_ORDER
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same gene's signature of another type, where one was measured.

    ``others``: {type: (gene indices (m,), signatures (m, L), that type's training mean (L,))}
    for the types other than ``ptype``. The first type of ``order[ptype]`` that measured a gene
    is used: prediction = ``mean`` + (its signature - its type's training mean). Returns
    (predictions (n, L) with NaN rows where no other type measured the gene, mask (n,), source
    type of each row (n,) ('' where none)).
    """
    eval_genes = np.asarray(eval_genes, np.int64)
    n, L = len(eval_genes), len(mean)
    pred = np.full((n, L), np.nan)
    source = np.full(n, "", dtype=object)
    for o in order.get(ptype, tuple(others)):
        if o == ptype or o not in others:
            continue
        genes, values, o_mean = others[o]
        pos = {int(g): i for i, g in enumerate(np.asarray(genes).tolist())}
        rows = np.array([pos.get(int(g), -1) for g in eval_genes.tolist()], np.int64)
        take = (rows >= 0) & (source == "")
        if take.any():
            pred[take] = (np.asarray(mean, np.float64) + np.asarray(values, np.float64)[rows[take]]
                          - np.asarray(o_mean, np.float64))
            source[take] = o
    return pred, source != "", source.astype(str)
