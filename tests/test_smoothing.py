"""Residual smoothing (tnfast.model.smoothing) against dense numpy oracles written from its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tnfast.data.csr import build_csr
from tnfast.model.graph import MultiplexGraph
from tnfast.model.smoothing import ALPHA, HOPS, ResidualCorrection, diffuse

N = 37  # odd; genes 30.. have no edge in any layer


def _layers(rng: np.random.Generator, weighted: bool) -> dict:
    def layer(src, dst):
        w = rng.uniform(0.1, 3.0, len(src)).astype(np.float32) if weighted else None
        return build_csr(src, dst, N, w)

    hub = np.zeros(25, np.int64), rng.choice(np.arange(1, 30), 25, replace=False)  # gene 0: a hub
    return {"ppi": layer(*hub),
            "pathway": layer(rng.integers(0, 30, 40), rng.integers(0, 30, 40)),
            "complex": layer(np.arange(10, 19), np.arange(11, 20))}  # a chain; most genes absent


def _dense_s(layers: dict, weighted: bool) -> np.ndarray:
    """Mean over layers of D^-1/2 A D^-1/2, float64."""
    s = np.zeros((N, N))
    for c in layers.values():
        a = np.zeros((N, N))
        for i in range(N):
            cols = c.indices[c.indptr[i]:c.indptr[i + 1]]
            a[i, cols] = c.weights[c.indptr[i]:c.indptr[i + 1]] if weighted else 1.0
        d = a.sum(axis=1)
        inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
        s += inv[:, None] * a * inv[None, :]
    return s / len(layers)


def _dense_diffuse(s: np.ndarray, x0: np.ndarray, alpha=ALPHA, hops=HOPS) -> np.ndarray:
    z = x0.copy()
    for _ in range(hops):
        z = (1 - alpha) * x0 + alpha * s @ z
    return z


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("k", [1, 5])
def test_diffuse_matches_dense_oracle(weighted, k):
    rng = np.random.default_rng(k + 10 * weighted)
    layers = _layers(rng, weighted)
    graph = MultiplexGraph.from_arrays(layers, N, use_edge_weights=weighted)
    x0 = rng.normal(size=(N, k))
    x0[rng.random(N) < 0.5] = 0  # residuals only on some genes, as on the training genes
    want = _dense_diffuse(_dense_s(layers, weighted), x0)
    got = diffuse(graph, torch.from_numpy(x0).float()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[30:], (1 - ALPHA) * x0[30:], rtol=1e-6)  # no edges: no neighbours' share
    assert not np.allclose(got[:30], (1 - ALPHA) * x0[:30])  # the rest did move


def test_diffuse_without_networks_keeps_own_share():
    graph = MultiplexGraph.from_arrays({}, N)
    x0 = torch.randn(N, 3)
    torch.testing.assert_close(diffuse(graph, x0), (1 - ALPHA) * x0)


def test_fit_is_the_least_squares_correction():
    """Type 0: residuals on 20 training genes, a valid residual that is 2.5 x their diffusion
    plus a little noise; type 1: residuals on 3 genes only (fewer than the rank); type 2: no valid genes.
    The correction equals the oracle's c * z V (the product: blind to the SVD's signs), c is
    the least-squares factor (other factors do worse on valid) and recovers about 2.5."""
    rng = np.random.default_rng(0)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 11, 4
    train = {0: rng.choice(30, 20, replace=False), 1: np.array([2, 5, 9]), 2: np.arange(20, 28)}
    resid = {t: rng.normal(size=(len(g), n_lm)) for t, g in train.items()}
    valid_genes = np.setdiff1d(np.arange(N), train[0])

    def oracle(t):
        v = np.linalg.svd(resid[t], full_matrices=False)[2][:rank]
        x0 = np.zeros((N, len(v)))
        x0[train[t]] = resid[t] @ v.T
        return _dense_diffuse(s, x0) @ v  # (N, L): the diffused residual

    z0 = oracle(0)
    e0 = 2.5 * z0[valid_genes] + 0.01 * rng.normal(size=(len(valid_genes), n_lm))
    e1 = rng.normal(size=(len(valid_genes), n_lm))
    rc = ResidualCorrection(N, rank, n_lm, 3)
    as_t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    rc.fit(graph, {t: (as_t(train[t]), as_t(resid[t]).float()) for t in train},
           {0: (as_t(valid_genes), as_t(e0).float()), 1: (as_t(valid_genes), as_t(e1).float())})
    got = rc(torch.arange(N)).numpy()  # (N, T, L)
    for t, e in ((0, e0), (1, e1)):
        z = oracle(t)
        d = z[valid_genes]
        c = max(float((d * e).sum() / (d * d).sum()), 0.0)
        assert float(rc.scale[t]) == pytest.approx(c, rel=1e-4)
        np.testing.assert_allclose(got[:, t], c * z, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(c * z).max()))

        def sse(factor):
            return float(((factor * d - e) ** 2).sum())

        assert sse(c) <= min(sse(0.8 * c), sse(1.2 * c), sse(0.0))
    assert float(rc.scale[0]) == pytest.approx(2.5, rel=0.02)
    assert np.all(got[:, 2] == 0) and float(rc.scale[2]) == 0  # no valid genes: no correction
    rc.clear()
    assert not rc(torch.arange(N)).any()


def test_ridge_residual_baseline_is_ridge_plus_the_oracle_correction():
    from tnfast.baselines import ridge_residual_baseline
    from tnfast.ridge import fit_ridge

    rng = np.random.default_rng(3)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 7, 3
    x = rng.normal(size=(N, 5)).astype(np.float32)
    train, valid, evals = np.arange(0, 30, 2), np.arange(1, 30, 2), np.arange(N)
    smooth = _dense_diffuse(s, rng.normal(size=(N, n_lm)), alpha=0.95, hops=30)  # shared along the networks
    y = (x @ rng.normal(size=(5, n_lm)) + 20 * smooth + 0.3 * rng.normal(size=(N, n_lm))).astype(np.float32)
    ridge = fit_ridge(x[train], y[train], x[valid], y[valid])
    got, factor = ridge_residual_baseline(graph, ridge, x, train, y[train], valid, y[valid], evals, rank)
    r = y[train] - ridge.predict(x[train])
    v = np.linalg.svd(r, full_matrices=False)[2][:rank]
    x0 = np.zeros((N, rank))
    x0[train] = r @ v.T
    z = _dense_diffuse(s, x0) @ v
    e = y[valid] - ridge.predict(x[valid])
    c = max(float((z[valid] * e).sum() / (z[valid] ** 2).sum()), 0.0)
    assert c > 0 and factor == pytest.approx(c, rel=1e-4)
    np.testing.assert_allclose(got, ridge.predict(x[evals]) + c * z[evals], rtol=1e-4, atol=1e-5)
    assert ((got[valid] - y[valid]) ** 2).sum() < ((ridge.predict(x[valid]) - y[valid]) ** 2).sum()
    # no valid genes: no factor to fit, the ridge itself
    got, factor = ridge_residual_baseline(graph, ridge, x, train, y[train], valid[:0], y[valid[:0]], evals, rank)
    assert factor == 0.0 and np.array_equal(got, ridge.predict(x[evals]))
