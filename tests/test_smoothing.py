"""Residual smoothing (tnfast.model.smoothing) against dense numpy oracles written from its
definition: per-layer diffusion with dense matrices, leave-one-out by refitting without each
gene, the choice among the nested fits by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tnfast.data.csr import build_csr
from tnfast.model.graph import MultiplexGraph
from tnfast.model.smoothing import (ALPHA, HOPS, JITTER, PENALTIES, ResidualCorrection, diffusions, fit_factors,
                                    candidates, held_out_errors, _normal_parts)

N = 37  # odd; genes 30.. have no edge in any layer
LAYERS = ("ppi", "pathway", "complex")


def _layers(rng: np.random.Generator, weighted: bool) -> dict:
    def layer(src, dst):
        w = rng.uniform(0.1, 3.0, len(src)).astype(np.float32) if weighted else None
        return build_csr(src, dst, N, w)

    hub = np.zeros(25, np.int64), rng.choice(np.arange(1, 30), 25, replace=False)  # gene 0: a hub
    return {"ppi": layer(*hub),
            "pathway": layer(rng.integers(0, 30, 40), rng.integers(0, 30, 40)),
            "complex": layer(np.arange(10, 19), np.arange(11, 20))}  # a chain; most genes absent


def _dense_s(layers: dict, weighted: bool) -> list[np.ndarray]:
    """Per layer, D^-1/2 A D^-1/2, float64."""
    out = []
    for c in layers.values():
        a = np.zeros((N, N))
        for i in range(N):
            cols = c.indices[c.indptr[i]:c.indptr[i + 1]]
            a[i, cols] = c.weights[c.indptr[i]:c.indptr[i + 1]] if weighted else 1.0
        d = a.sum(axis=1)
        inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
        out.append(inv[:, None] * a * inv[None, :])
    return out


def _dense_diffusions(s: list[np.ndarray], x0: np.ndarray) -> np.ndarray:
    """(2, layers, N, k): one hop and personalised PageRank, per layer."""
    out = np.zeros((2, len(s)) + x0.shape)
    for li, sl in enumerate(s):
        out[0, li] = sl @ x0
        z = x0.copy()
        for _ in range(HOPS):
            z = (1 - ALPHA) * x0 + ALPHA * sl @ z
        out[1, li] = z
    return out


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("k", [1, 5])
def test_diffusions_match_dense_oracle(weighted, k):
    rng = np.random.default_rng(k + 10 * weighted)
    layers = _layers(rng, weighted)
    graph = MultiplexGraph.from_arrays(layers, N, use_edge_weights=weighted)
    x0 = rng.normal(size=(N, k))
    x0[rng.random(N) < 0.5] = 0  # residuals only on some genes, as on the training genes
    want = _dense_diffusions(_dense_s(layers, weighted), x0)
    got = diffusions(graph, torch.from_numpy(x0).float()).numpy()
    assert got.shape == (2, 3, N, k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not got[0, :, 30:].any()  # no edges: nothing from neighbours
    np.testing.assert_allclose(got[1, :, 30:], (1 - ALPHA) * x0[None, 30:].repeat(3, 0), rtol=1e-6)
    assert not np.allclose(got[1, 0], got[1, 1])  # the layers are kept apart


def test_diffusions_without_networks_have_no_channels():
    x0 = torch.randn(N, 3)
    assert diffusions(MultiplexGraph.from_arrays({}, N), x0).shape == (2, 0, N, 3)


def _refit_errors(x: np.ndarray, e: np.ndarray, lam: float) -> np.ndarray:
    """Brute force: each gene left out, the penalised factors refitted on the rest (penalty
    relative to the full fit's per-column sums of squares), its squared error."""
    scale = np.einsum("gkl,gkl->k", x, x)
    out = np.zeros(len(e))
    for g in range(len(e)):
        keep = np.arange(len(e)) != g
        a = x[keep].transpose(0, 2, 1).reshape(-1, x.shape[1])
        c = np.linalg.solve(a.T @ a + np.diag((lam + JITTER) * scale), a.T @ e[keep].ravel())
        out[g] = ((e[g] - np.einsum("k,kl->l", c, x[g])) ** 2).sum()
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_held_out_error_is_the_sum_of_refits(lam):
    rng = np.random.default_rng(5)
    x, e = rng.normal(size=(9, 4, 7)), rng.normal(size=(9, 7))
    got = held_out_errors(_normal_parts(torch.from_numpy(x), torch.from_numpy(e)), lam).numpy()
    np.testing.assert_allclose(got, _refit_errors(x, e, lam), rtol=1e-9)


def _oracle_candidates(shape: tuple, own: int) -> list[tuple[str, np.ndarray, tuple]]:
    n_reach, n_layers, n_kinds, n_types = shape
    pooled = np.zeros(shape + (n_types,))
    for o in range(n_types):
        pooled[1, :, 0, o, o] = 1 / n_layers  # pagerank, residual
    pooled = pooled.reshape(-1, n_types)
    return [("own type", pooled[:, [own]], (0.0,), False), ("every type", pooled, (0.0,), False),
            ("every channel", np.eye(pooled.shape[0]), PENALTIES, True)]


def _oracle_fit(a: np.ndarray, e: np.ndarray, own: int, shape: tuple) -> tuple[np.ndarray, str, float]:
    """The choice by hand: from no correction, each candidate in turn at its best penalty
    (refitted without each gene) replaces the fit so far if its summed error is lower; every
    channel only if lower by more than the standard error of the summed per-gene differences;
    dead channels left out."""
    live = np.abs(a).max(axis=(0, 2)) > 0
    errs, tie, name, lam = (e ** 2).sum(1), None, "none", 0.0
    for cand, cand_tie, penalties, margin in _oracle_candidates(shape, own):
        cand_tie = cand_tie[live][:, np.abs(cand_tie[live]).sum(0) > 0]
        if not cand_tie.shape[1]:
            continue
        x = np.einsum("gcl,ck->gkl", a[:, live], cand_tie)
        scored = [(_refit_errors(x, e, p), p) for p in penalties]
        best = min(s[0].sum() for s in scored)
        cand_errs, cand_lam = next(s for s in scored if s[0].sum() == best)
        gain = errs - cand_errs
        if gain.sum() > (np.std(gain, ddof=1) * np.sqrt(len(e)) if margin else 0.0):
            errs, tie, name, lam = cand_errs, cand_tie, cand, cand_lam
    f = np.zeros(a.shape[1])
    if tie is not None:
        x = np.einsum("gcl,ck->gkl", a[:, live], tie)
        m = x.transpose(0, 2, 1).reshape(-1, x.shape[1])
        scale = (m * m).sum(0)
        f[live] = tie @ np.linalg.solve(m.T @ m + np.diag((lam + JITTER) * scale), m.T @ e.ravel())
    return f, name, lam


SHAPE = (2, 3, 2, 2)  # reach, layer, kind, type: 24 channels


@pytest.mark.parametrize("case", ["noise", "own pooled", "one channel", "dead type"])
def test_fit_factors_chooses_as_the_oracle(case):
    """Four valid sets of 14 genes: residuals that are noise (nothing beats no correction on
    held-out genes); 0.9 x the own type's PageRank residuals averaged over the layers (one
    factor suffices); 1.5 x one channel, type 1's signatures one hop over the second layer
    (only every channel finds it); the same with type 1 dead (all zeros: its channels are left
    out). Factors, choice and penalty as the oracle's."""
    rng = np.random.default_rng(["noise", "own pooled", "one channel", "dead type"].index(case))
    a = rng.normal(size=(14,) + SHAPE + (9,))
    if case == "dead type":
        a[..., 1, :] = 0
    e = rng.normal(size=(14, 9))
    if case == "own pooled":
        e = 0.5 * e + 0.9 * a[:, 1, :, 0, 0].mean(axis=1)
    elif case in ("one channel", "dead type"):
        e = 0.3 * e + 1.5 * a[:, 0, 1, 1, 1 if case == "one channel" else 0]
    flat = a.reshape(14, -1, 9)
    f, choice = fit_factors(torch.from_numpy(flat).float(), torch.from_numpy(e).float(), candidates(SHAPE, 0))
    want, name, lam = _oracle_fit(flat.astype(np.float32).astype(np.float64), e.astype(np.float32), 0, SHAPE)
    assert (choice["channels"], choice["penalty"]) == (name, lam)
    np.testing.assert_allclose(f.numpy(), want, rtol=1e-4, atol=1e-5)
    assert choice["held_out_mse"] <= choice["none_mse"]
    f = f.numpy().reshape(SHAPE)
    if case == "noise":
        assert name == "none" and not f.any()
    elif case == "own pooled":
        assert name == "own type" and f[1, :, 0, 0] == pytest.approx([0.3] * 3, abs=0.03)
        assert np.count_nonzero(f) == 3
    else:
        assert name == "every channel"
        assert f[0, 1, 1, 1 if case == "one channel" else 0] == pytest.approx(1.5, abs=0.1)
        if case == "dead type":
            assert not f[..., 1].any()


def _oracle_channels(s: list[np.ndarray], train: dict, n_lm: int, rank: int) -> np.ndarray:
    """(N, reach, layer, kind, type, L): each type's residuals and signatures in the residuals'
    top ``rank`` directions, diffused in landmark space."""
    out = np.zeros((N, 2, len(s), 2, len(train), n_lm))
    for o, (genes, r, y) in train.items():
        if len(genes) < 2:  # one gene: no directions to speak of
            continue
        v = np.linalg.svd(r, full_matrices=False)[2][:rank]
        for kind, x in enumerate((r, y)):
            x0 = np.zeros((N, n_lm))
            x0[genes] = x @ v.T @ v
            out[:, :, :, kind, o] = _dense_diffusions(s, x0).transpose(2, 0, 1, 3)
    return out


def test_fit_corrects_with_the_oracle_channels():
    """Type 0's valid residuals are 2 x type 1's residuals one hop over pathway - 1 x its own
    signatures by PageRank over ppi, plus a little noise; type 1's are noise (what its
    held-out errors choose, the oracle's too); type 2 has no valid genes and only one training
    gene (too few for directions: its channels are 0). Each fitted type's correction at every
    gene is the oracle's factors times the oracle's channels; type 2 gets none."""
    rng = np.random.default_rng(0)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 11, 4
    genes = {0: rng.choice(30, 16, replace=False), 1: np.array([2, 5, 9, 12, 20, 25]), 2: np.array([7])}
    train = {t: (g, rng.normal(size=(len(g), n_lm)), rng.normal(size=(len(g), n_lm))) for t, g in genes.items()}
    ch = _oracle_channels(s, train, n_lm, rank)
    valid = np.setdiff1d(np.arange(N), genes[0])
    e0 = 2.0 * ch[valid, 0, 1, 0, 1] - 1.0 * ch[valid, 1, 0, 1, 0] + 1e-3 * rng.normal(size=(len(valid), n_lm))
    e1 = rng.normal(size=(len(valid), n_lm))
    rc = ResidualCorrection(N, rank, n_lm, 3)
    as_t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    rc.fit(graph, {t: (as_t(g), as_t(r).float(), as_t(y).float()) for t, (g, r, y) in train.items()},
           {0: (as_t(valid), as_t(e0).float()), 1: (as_t(valid), as_t(e1).float())})
    assert set(rc.choice) == {0, 1}
    got = rc(torch.arange(N)).numpy()  # (N, T, L)
    for t, e in ((0, e0), (1, e1)):
        f, name, lam = _oracle_fit(ch[valid].reshape(len(valid), -1, n_lm), e, t, ch.shape[1:5])
        assert (rc.choice[t]["channels"], rc.choice[t]["penalty"]) == (name, lam)
        f = f.reshape(ch.shape[1:5])
        assert not f[..., 2].any()
        want = np.einsum("hlko,nhlkom->nm", f, ch)
        np.testing.assert_allclose(got[:, t], want, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(want).max()))
        if t == 0:
            assert name == "every channel"
            assert f[0, 1, 0, 1] == pytest.approx(2.0, rel=0.02) and f[1, 0, 1, 0] == pytest.approx(-1.0, rel=0.02)
    assert not got[:, 2].any()
    rc.clear()
    assert not rc.fitted and not rc(torch.arange(N)).any() and rc.choice == {}


def test_ridge_residual_baseline_is_ridge_plus_the_oracle_correction():
    """Two types whose signatures share a part smooth along the networks (OE's opposes
    RNAi's): the baseline is the ridge plus the correction the oracle fits on the ridge's
    residuals and the training signatures' deviations from their mean; it lowers the valid error."""
    from tnfast.baselines import RidgeFit, ridge_residual_baseline
    from tnfast.ridge import fit_ridge

    rng = np.random.default_rng(3)
    layers = _layers(rng, True)
    graph = MultiplexGraph.from_arrays(layers, N)
    s, n_lm, rank = _dense_s(layers, True), 7, 3
    x = rng.normal(size=(N, 5)).astype(np.float32)
    train, valid, evals = np.arange(0, 30, 2), np.arange(1, 30, 2), np.arange(N)
    smooth = _dense_diffusions(s, rng.normal(size=(N, n_lm)))[1].sum(0)  # shared along the networks
    ys = {t: (x @ rng.normal(size=(5, n_lm)) + sign * 10 * smooth + 0.1 * rng.normal(size=(N, n_lm))).astype(np.float32)
          for t, sign in (("RNAi", 1), ("OE", -1))}
    fits = {t: RidgeFit(fit_ridge(x[train], y[train], x[valid], y[valid]), train, y[train], valid, y[valid])
            for t, y in ys.items()}
    got = ridge_residual_baseline(graph, x, fits, {t: evals for t in ys}, rank)
    resid = {t: (y - fits[t].ridge.predict(x)).astype(np.float32) for t, y in ys.items()}
    ch = _oracle_channels(s, {i: (train, resid[t][train].astype(np.float64),
                                  (ys[t][train] - ys[t][train].mean(0)).astype(np.float32).astype(np.float64))
                              for i, t in enumerate(ys)}, n_lm, rank)
    for i, t in enumerate(ys):
        f, name, lam = _oracle_fit(ch[valid].reshape(len(valid), -1, n_lm), resid[t][valid].astype(np.float64), i,
                                   ch.shape[1:5])
        pred, choice = got[t]
        assert (choice["channels"], choice["penalty"]) == (name, lam) and name != "none"
        want = fits[t].ridge.predict(x[evals]) + np.einsum("c,ncm->nm", f, ch.reshape(N, -1, n_lm))
        np.testing.assert_allclose(pred, want, rtol=1e-3, atol=1e-3)
        assert ((pred[valid] - ys[t][valid]) ** 2).sum() < ((fits[t].ridge.predict(x[valid]) - ys[t][valid]) ** 2).sum()
    # no valid genes: nothing to fit on, the ridge itself
    bare = {t: f._replace(valid_genes=valid[:0], y_valid=f.y_valid[:0]) for t, f in fits.items()}
    for t, (pred, choice) in ridge_residual_baseline(graph, x, bare, {t: evals for t in ys}, rank).items():
        assert choice["channels"] == "none" and np.array_equal(pred, bare[t].ridge.predict(x[evals]))
