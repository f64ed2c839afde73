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


def _diffused_oracle(s: np.ndarray, genes: np.ndarray, resid: np.ndarray, rank: int) -> np.ndarray:
    """(N, L): the residuals on ``genes`` in their top ``rank`` directions, diffused."""
    v = np.linalg.svd(resid, full_matrices=False)[2][:rank]
    x0 = np.zeros((N, len(v)))
    x0[genes] = resid @ v.T
    return _dense_diffuse(s, x0) @ v


def _lstsq_mix(z: list[np.ndarray], e: np.ndarray, cols: list[int]) -> np.ndarray:
    c = np.zeros(len(z))
    if cols:
        a = np.stack([z[o].ravel() for o in cols], 1)
        c[cols] = np.linalg.lstsq(a, e.ravel(), rcond=None)[0]
    return c


def _held_out_sse(z: list[np.ndarray], e: np.ndarray, cols: list[int]) -> float:
    """Each gene (row) left out in turn, the mix refitted on the others: its squared error."""
    total = 0.0
    for g in range(len(e)):
        keep = np.arange(len(e)) != g
        c = _lstsq_mix([zt[keep] for zt in z], e[keep], cols)
        total += float(((e[g] - sum(c[o] * z[o][g] for o in cols)) ** 2).sum())
    return total


def _oracle_mix(z: list[np.ndarray], e: np.ndarray, own: int, cols: list[int]) -> np.ndarray:
    """The mixing rule by hand: own type alone unless all of ``cols`` predict held-out genes
    better, then least squares, the own factor held at or above 0."""
    if own in cols and len(cols) > 1 and _held_out_sse(z, e, [own]) <= _held_out_sse(z, e, cols):
        cols = [own]
    c = _lstsq_mix(z, e, cols)
    return _lstsq_mix(z, e, [o for o in cols if o != own]) if c[own] < 0 else c


def test_fit_is_the_least_squares_mix_of_every_types_correction():
    """Type 0: residuals on 20 training genes; its valid residual is 2.5 x its own diffusion
    - 1.0 x type 1's, plus a little noise. Type 1: residuals on 3 genes only (fewer than the
    rank); its valid residual leans against its own diffusion, so its own factor is held at 0
    and the rest refitted. Type 2: no valid genes: no correction, yet its residuals serve the
    others. Each mix row is the oracle's least-squares solution (any other does worse on valid)
    and the correction is the mix of the oracle's diffused residuals (the product: blind to the
    SVD's signs)."""
    rng = np.random.default_rng(0)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 11, 4
    train = {0: rng.choice(30, 20, replace=False), 1: np.array([2, 5, 9]), 2: np.arange(20, 28)}
    resid = {t: rng.normal(size=(len(g), n_lm)) for t, g in train.items()}
    valid_genes = np.setdiff1d(np.arange(N), train[0])
    z = [_diffused_oracle(s, train[t], resid[t], rank) for t in range(3)]
    zv = [zt[valid_genes] for zt in z]
    e0 = 2.5 * zv[0] - 1.0 * zv[1] + 0.002 * rng.normal(size=zv[0].shape)
    e1 = -0.7 * zv[1] + 0.5 * zv[2] + 0.002 * rng.normal(size=zv[0].shape)
    rc = ResidualCorrection(N, rank, n_lm, 3)
    as_t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    rc.fit(graph, {t: (as_t(train[t]), as_t(resid[t]).float()) for t in train},
           {0: (as_t(valid_genes), as_t(e0).float()), 1: (as_t(valid_genes), as_t(e1).float())})
    mix = rc.mix.numpy()
    want = np.stack([_oracle_mix(zv, e0, 0, [0, 1, 2]), _oracle_mix(zv, e1, 1, [0, 1, 2]), np.zeros(3)])
    np.testing.assert_allclose(mix, want, rtol=1e-4, atol=1e-5)
    assert mix[0] == pytest.approx([2.5, -1.0, 0.0], abs=0.02)
    assert mix[1, 1] == 0 and mix[1, 2] == pytest.approx(0.5, abs=0.1)
    assert _lstsq_mix(zv, e1, [0, 1, 2])[1] < 0  # unconstrained, type 1 would have taken its own with a minus
    got = rc(torch.arange(N)).numpy()  # (N, T, L)
    for t in range(3):
        corr = sum(mix[t, o] * z[o] for o in range(3))
        np.testing.assert_allclose(got[:, t], corr, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(corr).max()))
    assert not got[:, 2].any()  # no valid genes: no correction

    def sse(c):
        return float(((sum(c[o] * zv[o] for o in range(3)) - e0) ** 2).sum())

    for step in np.eye(3):
        assert sse(mix[0]) <= min(sse(mix[0] + 0.05 * step), sse(mix[0] - 0.05 * step))
    rc.clear()
    assert not rc(torch.arange(N)).any()


def test_a_type_without_training_residuals_mixes_in_nothing():
    rng = np.random.default_rng(1)
    layers = _layers(rng, False)
    graph = MultiplexGraph.from_arrays(layers, N, use_edge_weights=False)
    s, n_lm, rank = _dense_s(layers, False), 6, 3
    genes = np.arange(0, 30, 2)
    resid = rng.normal(size=(len(genes), n_lm))
    z = _diffused_oracle(s, genes, resid, rank)
    valid = np.arange(1, 30, 2)
    e = 1.5 * z[valid] + 0.01 * rng.normal(size=(len(valid), n_lm))
    rc = ResidualCorrection(N, rank, n_lm, 2)
    as_t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    rc.fit(graph, {0: (as_t(genes), as_t(resid).float())},
           {0: (as_t(valid), as_t(e).float()), 1: (as_t(valid), as_t(-e).float())})
    # type 1 has no residuals of its own: only type 0's, with whatever sign fits
    assert rc.mix[:, 1].tolist() == [0.0, 0.0]
    c = float((z[valid] * e).sum() / (z[valid] ** 2).sum())
    assert c == pytest.approx(1.5, abs=0.05)
    assert float(rc.mix[0, 0]) == pytest.approx(c, rel=1e-4) and float(rc.mix[1, 0]) == pytest.approx(-c, rel=1e-4)


@pytest.mark.parametrize("other_share", [0.0, 1.0])
def test_other_types_are_mixed_in_only_when_they_predict_held_out_genes(other_share):
    """12 genes: the residual is 0.8 x the own type's diffusion, plus ``other_share`` x type 1's,
    plus noise as large. Without a real share the full fit still gives type 1 a factor (noise),
    and the held-out errors (checked against refits by hand) say no: its factor is exactly 0.
    With one they say yes."""
    from tnfast.model.smoothing import held_out_error, mixing

    rng = np.random.default_rng(4)
    z = [rng.normal(size=(12, 9)) for _ in range(3)]
    e = 0.8 * z[0] + other_share * z[1] + rng.normal(size=(12, 9))
    d = torch.from_numpy(np.stack(z, 1))
    for cols in ([0], [0, 1, 2]):
        assert held_out_error(d[:, cols], torch.from_numpy(e)) == pytest.approx(_held_out_sse(z, e, cols), rel=1e-9)
    got = mixing(d.float(), torch.from_numpy(e).float(), 0).numpy()
    np.testing.assert_allclose(got, _oracle_mix(z, e, 0, [0, 1, 2]), rtol=1e-4, atol=1e-6)
    if other_share:
        assert got[1] == pytest.approx(1.0, abs=0.3)
    else:
        assert got[1] == got[2] == 0 and _lstsq_mix(z, e, [0, 1, 2])[1] != 0


def test_ridge_residual_baseline_is_ridge_plus_the_oracle_correction():
    from tnfast.baselines import RidgeFit, ridge_residual_baseline
    from tnfast.ridge import fit_ridge

    rng = np.random.default_rng(3)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 7, 3
    x = rng.normal(size=(N, 5)).astype(np.float32)
    train, valid, evals = np.arange(0, 30, 2), np.arange(1, 30, 2), np.arange(N)
    smooth = _dense_diffuse(s, rng.normal(size=(N, n_lm)), alpha=0.95, hops=30)  # shared along the networks
    ys = {t: (x @ rng.normal(size=(5, n_lm)) + sign * 20 * smooth + 0.3 * rng.normal(size=(N, n_lm))).astype(np.float32)
          for t, sign in (("RNAi", 1), ("OE", -1))}  # OE's shared part opposes RNAi's
    fits = {t: RidgeFit(fit_ridge(x[train], y[train], x[valid], y[valid]), train, y[train], valid, y[valid])
            for t, y in ys.items()}
    got = ridge_residual_baseline(graph, x, fits, {t: evals for t in ys}, rank)
    z = [_diffused_oracle(s, train, y[train] - fits[t].ridge.predict(x[train]), rank) for t, y in ys.items()]
    for i, (t, y) in enumerate(ys.items()):
        e = y[valid] - fits[t].ridge.predict(x[valid])
        want = _oracle_mix([zt[valid] for zt in z], e, i, [0, 1])
        pred, mix = got[t]
        assert list(mix) == ["RNAi", "OE"] and [mix["RNAi"], mix["OE"]] == pytest.approx(want, rel=1e-3, abs=1e-4)
        assert want[i] > 0
        np.testing.assert_allclose(pred, fits[t].ridge.predict(x[evals]) + want[0] * z[0][evals] + want[1] * z[1][evals],
                                   rtol=1e-3, atol=1e-4)
        assert ((pred[valid] - y[valid]) ** 2).sum() < ((fits[t].ridge.predict(x[valid]) - y[valid]) ** 2).sum()
    # no valid genes: no mix to fit, the ridge itself
    bare = {t: f._replace(valid_genes=valid[:0], y_valid=f.y_valid[:0]) for t, f in fits.items()}
    for t, (pred, mix) in ridge_residual_baseline(graph, x, bare, {t: evals for t in ys}, rank).items():
        assert not any(mix.values()) and np.array_equal(pred, bare[t].ridge.predict(x[evals]))
