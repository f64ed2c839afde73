"""FunDNN's ridge prior: closed-form fit on training samples, the model's starting point."""

import math

import numpy as np
import pytest
import torch

from test_model import N_LM, build, make_graph, randomize_, tiny_cfg
from tnfast.model import RidgePrior


def ridge_oracle(x: np.ndarray, y: np.ndarray, alpha: float, x_new: np.ndarray) -> np.ndarray:
    """Centred ridge by the normal equations: (Xc'Xc + aI)^-1 Xc'Yc, intercept the means."""
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return (x_new - xm) @ w + ym


def samples(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    genes = torch.randperm(240, generator=g)[:n]
    types = torch.randint(0, 2, (n,), generator=g)  # type 2 (OE) gets no samples: stays unfitted
    return genes, types, g


def test_prior_inputs_scale_each_block_to_unit_mean_square_rows():
    _, g = make_graph(structural_dim=6)
    model, g = build(graph=g, cfg=tiny_cfg(structural_dim=6))
    genes = torch.arange(240)
    x = model.prior_inputs(g, genes)
    assert x.shape == (240, 3 * 6 + 5 + 1)
    for li in range(3):  # structural blocks: unit mean-square entries / sqrt(width) -> unit mean-square rows
        sq = (x[:, li * 6:(li + 1) * 6] ** 2).sum(dim=1)
        has = g.has_edge[li]
        torch.testing.assert_close(sq[has].mean(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)
        assert torch.all(sq[~has] == 0)
    feats = x[:, 18:23] * math.sqrt(5)
    torch.testing.assert_close(feats, g.features)
    assert torch.equal(x[:, 23].bool(), g.feature_present)


def test_fitted_prior_is_the_ridge_of_the_training_samples():
    _, g = make_graph(structural_dim=4)
    model, g = build(graph=g, cfg=tiny_cfg(structural_dim=4))
    genes, types, gen = samples()
    x = model.prior_inputs(g, genes)
    truth = x[:, :8] @ torch.randn(8, N_LM, generator=gen) + 0.3 * torch.randn(len(genes), N_LM, generator=gen)
    model.fit_prior(g, genes, types, truth)
    prior = model.prior
    assert prior.fitted.tolist() == [True, True, False]
    new = torch.arange(200, 240)
    got = prior(model.prior_inputs(g, new))
    xn, yn = x.double().numpy(), truth.double().numpy()
    for t in (0, 1):
        rows = (types == t).numpy()
        want = ridge_oracle(xn[rows], yn[rows], float(prior.alpha[t]), model.prior_inputs(g, new).double().numpy())
        np.testing.assert_allclose(got[:, t].numpy(), want, rtol=1e-3, atol=1e-4)
        assert 1e-3 <= float(prior.alpha[t]) < 1e5  # a real signal: not the largest penalty
    assert torch.all(got[:, 2] == 0)  # an unfitted type adds nothing


def test_untrained_model_predicts_the_prior_and_needs_its_inputs():
    _, g = make_graph(structural_dim=4)
    model, g = build(graph=g, cfg=tiny_cfg(structural_dim=4))
    model.eval()
    genes, types, gen = samples(seed=1)
    truth = torch.randn(len(genes), N_LM, generator=gen)
    emb = model.encode(g)
    assert torch.equal(model.first_guess(emb[genes]), torch.zeros(len(genes), 3, N_LM))  # MLPs start at 0
    model.fit_prior(g, genes, types, truth)
    with pytest.raises(ValueError, match="prior inputs"):
        model.first_guess(emb[genes])
    new = torch.arange(230, 240)
    want = model.prior(model.prior_inputs(g, new))
    # GenSAN starts as the identity: with no measurements the prediction is the prior itself
    got = model.predict_genes(emb, new, None, graph=g)
    torch.testing.assert_close(got, model.scaler.inverse(want))
    # once trained (here: randomised), the MLP's residual moves it
    randomize_(model.fundnn)
    assert not torch.allclose(model.predict_genes(emb, new, None, graph=g), got)


def test_prior_off_or_without_fixed_inputs():
    model, g = build(cfg=tiny_cfg(ridge_prior=False))
    assert model.prior is None and model.prior_inputs(g, torch.arange(3)) is None
    _, g = make_graph(with_features=False)  # no features, no structural inputs: nothing to fit on
    model, g = build(graph=g)
    assert model.prior is None


def test_prior_buffers_round_trip_through_the_state_dict(tmp_path):
    _, g = make_graph(structural_dim=4)
    model, g = build(graph=g, cfg=tiny_cfg(structural_dim=4))
    genes, types, gen = samples(seed=2)
    model.fit_prior(g, genes, types, torch.randn(len(genes), N_LM, generator=gen))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again, _ = build(graph=g, cfg=tiny_cfg(structural_dim=4), seed=5)
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = model.prior_inputs(g, torch.arange(240))
    assert torch.equal(again.prior(x), model.prior(x))
    assert isinstance(again.prior, RidgePrior) and again.prior.fitted.tolist() == [True, True, False]
