"""Ridge, network embedding and metrics against hand-computed and closed-form oracles."""

import numpy as np
import pytest

from tnfast.data.csr import build_csr
from tnfast import embed
from tnfast.embed import layer_embedding, multiplex_embedding
from tnfast.metrics import auroc, pearson_delta, row_pearson
from tnfast.ridge import fit_ridge, loo_errors


def test_row_pearson_hand_values():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    b = np.array([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(row_pearson(a, b), [1.0, -1.0, 0.0])
    # r of (1,2,3,4) with (1,3,2,4): cov = 4, var = 5 -> 0.8
    np.testing.assert_allclose(row_pearson([[1, 2, 3, 4]], [[1, 3, 2, 4]]), [0.8])


def test_auroc_hand_values():
    # positives 0.9, 0.4 vs negatives 0.5, 0.1, 0.4: of the 6 pairs, 4 won, 1 lost, 1 tied -> 4.5 / 6
    score = np.array([0.9, 0.5, 0.4, 0.1, 0.4])
    assert auroc(score, np.array([1, 0, 1, 0, 0], bool)) == 0.75
    assert auroc(score, score > 0.45) == 1.0 and auroc(-score, score > 0.45) == 0.0
    assert np.isnan(auroc(score, np.ones(5, bool)))


def test_training_mean_has_zero_pearson_delta_but_high_pcc():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=50) * 3
    truth = shared + rng.normal(size=(20, 50))
    mean = truth[:10].mean(axis=0)
    pred = np.broadcast_to(mean, (10, 50))
    assert row_pearson(pred, truth[10:]).mean() > 0.8
    np.testing.assert_array_equal(pearson_delta(pred, truth[10:], mean), 0.0)


def test_ridge_matches_normal_equations_and_picks_alpha_on_valid():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 12))
    w = rng.normal(size=(12, 30))
    y = 5 + x @ w + 0.5 * rng.normal(size=(80, 30))
    model = fit_ridge(x[:60], y[:60], x[60:], y[60:], alphas=(0.1, 1.0, 1e4))
    xc = x[:60] - x[:60].mean(0)
    yc = y[:60] - y[:60].mean(0)
    expected = np.linalg.solve(xc.T @ xc + model.alpha * np.eye(12), xc.T @ yc)
    np.testing.assert_allclose(model.weight, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.y_mean, y[:60].mean(0), rtol=1e-6)
    assert model.alpha < 1e4  # the signal is real: the heavy penalty loses on valid
    # a pure-noise target: the heaviest penalty (prediction ~ training mean) wins
    noise = fit_ridge(x[:60], rng.normal(size=(60, 30)), x[60:], rng.normal(size=(20, 30)),
                      alphas=(1e-3, 1e8))
    assert np.abs(noise.predict(x[60:]) - noise.y_mean).max() < 1e-2


def test_ridge_without_valid_rows_picks_the_leave_one_out_alpha():
    # oracle: refit without each row in turn, predict it, average the squared errors
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 8))
    y = x @ rng.normal(size=(8, 5)) + rng.normal(size=(25, 5))
    alphas = (1e-3, 0.3, 3.0, 30.0, 1e4)
    brute = []
    for a in alphas:
        err = [(fit_ridge(np.delete(x, i, 0), np.delete(y, i, 0), alphas=(a,)).predict(x[i:i + 1]) - y[i]) ** 2
               for i in range(len(x))]
        brute.append(np.mean(err))
    np.testing.assert_allclose(loo_errors(x, y, alphas), brute, rtol=1e-4)
    assert fit_ridge(x, y, None, None, alphas=alphas).alpha == alphas[int(np.argmin(brute))]
    # pure noise: the largest penalty wins (nothing to learn)
    assert fit_ridge(x, rng.normal(size=(25, 5)), alphas=alphas).alpha == 1e4


def _planted(rng, sizes, p_in, p_out, isolated=1):
    """An undirected planted-partition graph (with ``isolated`` edgeless genes at the end)."""
    block = np.repeat(np.arange(len(sizes)), sizes)
    n = len(block)
    i, j = np.triu_indices(n, 1)
    keep = rng.random(len(i)) < np.where(block[i] == block[j], p_in, p_out)
    return build_csr(i[keep], j[keep], n + isolated), n


def _top_projector(csr, k):
    """Dense oracle: the projector on the k leading eigenvectors of (D + tau)^-1/2 A (D + tau)^-1/2
    over the genes with edges, tau = embed.DEGREE_REG x their mean degree, and those genes."""
    a = np.zeros((csr.n, csr.n))
    rows = np.repeat(np.arange(csr.n), np.diff(csr.indptr))
    a[rows, csr.indices] = csr.weights
    deg = a.sum(axis=1)
    idx = np.flatnonzero(deg > 0)
    d = deg[idx] + embed.DEGREE_REG * deg[idx].mean()
    s = a[np.ix_(idx, idx)] / np.sqrt(np.outer(d, d))
    w, v = np.linalg.eigh(s)
    v = v[:, np.argsort(w)[::-1][:k]]
    return v @ v.T, idx


@pytest.mark.parametrize("dense_max", [10_000, 50])  # dense eigh, then LOBPCG
def test_embedding_spans_the_leading_eigenvectors(monkeypatch, dense_max):
    monkeypatch.setattr(embed, "DENSE_MAX", dense_max)
    csr, n = _planted(np.random.default_rng(0), [40, 60, 75, 90], 0.3, 0.01)
    e = layer_embedding(csr, dim=4, rng=np.random.default_rng(1))
    assert e.shape == (n + 1, 4) and e.dtype == np.float32
    np.testing.assert_array_equal(e[n], 0)  # the edgeless gene
    proj, idx = _top_projector(csr, 4)
    np.testing.assert_array_equal(idx, np.arange(n))
    # rows of unit mean square norm: orthonormal columns scaled by sqrt(genes with edges / dim)
    np.testing.assert_allclose((e[:n] ** 2).sum(axis=1).mean(), 1.0, rtol=1e-4)
    q = e[:n].astype(np.float64) / np.sqrt(n / 4)
    np.testing.assert_allclose(q @ q.T, proj, atol=1e-3)
    # genes of one planted module read alike, genes of two modules do not
    u = e[:n] / np.linalg.norm(e[:n], axis=1, keepdims=True)
    sim = u @ u.T
    assert sim[:40, :40].mean() > 0.8 and np.abs(sim[:40, 40:100]).mean() < 0.3


@pytest.mark.parametrize("dense_max", [10_000, 50])
def test_isolated_edges_do_not_take_the_leading_eigenvectors(monkeypatch, dense_max):
    """Four planted modules and 30 isolated edges: each edge is a component of eigenvalue 1 of
    the unregularised D^-1/2 A D^-1/2, 30 of them above every module's; with the regularised
    degrees the four eigenvectors read the modules, and the edges' genes get next to nothing."""
    monkeypatch.setattr(embed, "DENSE_MAX", dense_max)
    csr, n = _planted(np.random.default_rng(0), [40, 60, 75, 90], 0.3, 0.01)
    src = np.concatenate([np.repeat(np.arange(csr.n), np.diff(csr.indptr)), n + 2 * np.arange(30)])
    dst = np.concatenate([csr.indices, n + 2 * np.arange(30) + 1])
    e = layer_embedding(build_csr(src, dst, n + 60), dim=4, rng=np.random.default_rng(1))
    u = e[:n] / np.linalg.norm(e[:n], axis=1, keepdims=True)
    sim = u @ u.T
    for lo, hi in ((0, 40), (40, 100), (100, 175), (175, 265)):
        other = np.r_[0:lo, hi:n]
        assert sim[lo:hi, lo:hi].mean() > 0.8 and np.abs(sim[lo:hi, other]).mean() < 0.3, (lo, hi)
    assert (e[n:] ** 2).sum(axis=1).max() < 0.05 * (e[:n] ** 2).sum(axis=1).mean()


@pytest.mark.parametrize("dense_max", [10_000, 10])
def test_embedding_of_disjoint_cliques_is_constant_per_clique(monkeypatch, dense_max):
    # 12 disjoint 5-cliques: eigenvalue 1 has multiplicity 12 (where Lanczos stalls); any basis
    # of that space is constant on each clique (regular components: sqrt(degree) is constant)
    monkeypatch.setattr(embed, "DENSE_MAX", dense_max)
    src, dst = [], []
    for c in range(12):
        i, j = np.triu_indices(5, 1)
        src += list(5 * c + i)
        dst += list(5 * c + j)
    csr = build_csr(np.array(src), np.array(dst), 60)
    e = layer_embedding(csr, dim=4, rng=np.random.default_rng(0)).reshape(12, 5, 4)
    np.testing.assert_allclose(e, np.broadcast_to(e[:, :1], e.shape), atol=1e-4)
    assert np.linalg.matrix_rank(e[:, 0], tol=1e-3) == 4


def test_embedding_of_a_small_layer_pads_with_zero_columns():
    csr = build_csr(np.array([0, 1]), np.array([1, 2]), 5)  # a 3-gene path, 2 edgeless genes
    e = layer_embedding(csr, dim=8, rng=np.random.default_rng(0))
    assert e.shape == (5, 8)
    np.testing.assert_array_equal(e[:, 3:], 0)
    np.testing.assert_array_equal(e[3:], 0)
    proj, _ = _top_projector(csr, 3)
    q = e[:3, :3].astype(np.float64) / np.sqrt(3 / 8)
    np.testing.assert_allclose(q @ q.T, proj, atol=1e-5)  # all three eigenvectors: the identity
    np.testing.assert_allclose(proj, np.eye(3), atol=1e-9)


def test_multiplex_embedding_is_deterministic_and_stacks_layers():
    csr = build_csr(np.array([0, 1, 2]), np.array([1, 2, 3]), 4)
    a = multiplex_embedding({"a": csr, "b": csr}, dim=2, seed=3)
    b = multiplex_embedding({"a": csr, "b": csr}, dim=2, seed=3)
    assert a.shape == (4, 4)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(3)
    first = layer_embedding(csr, 2, rng)
    np.testing.assert_array_equal(a[:, :2], first)
    np.testing.assert_array_equal(a[:, 2:], layer_embedding(csr, 2, rng))