"""Ridge, network embedding and metrics against hand-computed and closed-form oracles."""

import numpy as np

from tnfast.data.csr import build_csr
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


def test_embedding_reflects_neighbourhoods():
    # two 5-cliques joined by nothing, plus an isolated gene
    src, dst = [], []
    for base in (0, 5):
        for i in range(5):
            for j in range(i + 1, 5):
                src.append(base + i)
                dst.append(base + j)
    csr = build_csr(np.array(src), np.array(dst), 11)
    e = layer_embedding(csr, dim=16, hops=3, rng=np.random.default_rng(0))
    assert e.shape == (11, 16) and e.dtype == np.float32
    np.testing.assert_array_equal(e[10], 0)
    sim = e @ e.T
    within = sim[0, 1:5].mean()
    across = np.abs(sim[0, 5:10]).mean()
    assert within > 0.9 and within > across + 0.5


def test_multiplex_embedding_is_deterministic_and_stacks_layers():
    csr = build_csr(np.array([0, 1, 2]), np.array([1, 2, 3]), 4)
    a = multiplex_embedding({"a": csr, "b": csr}, dim=8, hops=2, seed=3)
    b = multiplex_embedding({"a": csr, "b": csr}, dim=8, hops=2, seed=3)
    assert a.shape == (4, 16)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, :8], a[:, 8:])  # each layer draws its own projection
