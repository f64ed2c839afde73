"""The output subspace (tnfast.model.subspace): the basis against numpy's SVD, the rank chosen
on valid (the best of the ladder, only by a margin), and the projection per type."""

import numpy as np
import pytest
import torch

from tnfast.metrics import pearson_delta
from tnfast.model.subspace import RANKS, OutputSubspace

L, T = 150, 3


def _data(seed: int, n_train: int, n_valid: int, rank: int, error: float):
    """Scaled training signatures and valid truth with a rank-``rank`` gene-specific part plus
    a little full-rank noise, predictions = the valid genes' low-rank part + isotropic error of
    sd ``error``, and a landmark std that is not uniform."""
    rng = np.random.default_rng(seed)
    loadings = rng.standard_normal((rank, L))
    signal = lambda n: rng.standard_normal((n, rank)) @ loadings  # noqa: E731
    train = signal(n_train) + 0.3 * rng.standard_normal((n_train, L))
    clean = signal(n_valid)
    truth = clean + 0.3 * rng.standard_normal((n_valid, L))
    pred = clean + error * rng.standard_normal((n_valid, L))
    std = rng.uniform(0.5, 2.0, L)
    return [torch.from_numpy(a).float() for a in (train, pred, truth, std)]


def _projector(train: np.ndarray, k: int) -> np.ndarray:
    vt = np.linalg.svd(np.asarray(train, np.float64), full_matrices=False)[2][:k]
    return vt.T @ vt


def _valid_pd(pred, truth, std, proj=None) -> np.ndarray:
    """Per-gene PearsonΔ in the signatures' units (scaled values are deviations from the mean)."""
    p = pred.double().numpy()
    p = p if proj is None else p @ proj
    sd = std.double().numpy()
    return pearson_delta(p * sd, truth.double().numpy() * sd, np.zeros(L))


@pytest.mark.parametrize("n_train", [40, 300])
def test_basis_spans_the_training_signatures_leading_directions(n_train):
    train, pred, truth, std = _data(0, n_train, 50, 12, 1.0)
    s = OutputSubspace(L, T)
    s.fit(1, train, pred, truth, std)
    basis = s.basis[1].double().numpy()
    k = min(n_train, RANKS[-1])
    for r in (*RANKS, k):
        r = min(r, k)
        np.testing.assert_allclose(basis[:, :r] @ basis[:, :r].T, _projector(train, r), atol=1e-5)
    assert not basis[:, k:].any()  # fewer training rows than the largest rank: zero columns
    np.testing.assert_allclose(basis[:, :k].T @ basis[:, :k], np.eye(k), atol=1e-5)
    assert not s.basis[0].any() and not s.basis[2].any()  # other types untouched


def test_rank_is_the_best_of_the_ladder_when_it_clearly_helps():
    """A rank-12 signal with large isotropic error: projecting removes most of the error."""
    train, pred, truth, std = _data(1, 400, 300, 12, 3.0)
    s = OutputSubspace(L, T)
    info = s.fit(2, train, pred, truth, std)
    base = _valid_pd(pred, truth, std)
    gains = {r: (_valid_pd(pred, truth, std, _projector(train, r)) - base).mean() for r in RANKS}
    best = max(gains, key=gains.get)
    assert gains[best] > 0.1  # the case is what it claims to be
    assert int(s.rank[2]) == best == info["rank"] and int(s.rank[0]) == int(s.rank[1]) == 0
    assert info["valid_gain"] == pytest.approx(gains[best], abs=1e-4)


def test_rank_only_by_more_than_a_standard_error():
    """Over cases from hopeless (full-rank truth, small error: projecting loses signal) to
    helpful, on a few or many valid genes: the rank is the ladder's best exactly when its mean
    per-gene gain exceeds one standard error of those gains, else 0 (no projection)."""
    taken = set()
    for seed, (n_valid, rank, error) in enumerate([(8, 140, 0.3), (8, 12, 1.0), (30, 140, 0.3), (12, 40, 0.8),
                                                    (6, 20, 0.6), (200, 12, 2.0), (10, 60, 1.0)]):
        train, pred, truth, std = _data(10 + seed, 300, n_valid, rank, error)
        s = OutputSubspace(L, T)
        s.fit(0, train, pred, truth, std)
        base = _valid_pd(pred, truth, std)
        gains = {r: _valid_pd(pred, truth, std, _projector(train, r)) - base for r in RANKS}
        best = max(gains, key=lambda r: gains[r].mean())
        g = gains[best]
        want = best if g.mean() > g.std() / np.sqrt(len(g)) else 0
        assert int(s.rank[0]) == want, (seed, n_valid, rank, error)
        taken.add(want > 0)
    assert taken == {True, False}  # both outcomes were exercised


def test_projection_per_type():
    rng = np.random.default_rng(3)
    s = OutputSubspace(L, T)
    for t in range(T):
        train, pred, truth, std = _data(20 + t, 300, 100, 12, 3.0)
        s.fit(t, train, pred, truth, std)
    x = torch.from_numpy(rng.standard_normal((37, T, L))).float()
    s.rank.zero_()
    assert s(x) is x  # no type projected: the input itself, no copy
    s.rank[:] = torch.tensor([0, 16, 64])
    out = s(x)
    assert torch.equal(out[:, 0], x[:, 0])  # rank 0: untouched
    basis = s.basis.double().numpy()
    for t, r in ((1, 16), (2, 64)):
        want = x[:, t].double().numpy() @ basis[t, :, :r] @ basis[t, :, :r].T
        np.testing.assert_allclose(out[:, t].double().numpy(), want, atol=1e-5)
        np.testing.assert_allclose(s.project(t, x[:, t]).numpy(), out[:, t].numpy())


def test_too_few_genes_leave_it_off():
    train, pred, truth, std = _data(4, 300, 1, 12, 3.0)
    s = OutputSubspace(L, T)
    assert s.fit(0, train, pred, truth, std)["rank"] == 0 and int(s.rank[0]) == 0
    assert s.fit(0, train[:1], *_data(4, 300, 50, 12, 3.0)[1:])["rank"] == 0
