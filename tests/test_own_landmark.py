"""The own-landmark effect (tnfast.own_effect, tnfast.model.own_landmark): the fit against a hand computation, the
rules that keep a type off, what prediction replaces, and a trained run on a bundle with a
planted knock-down of its landmark genes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import without_fitted_term

from tnfast.data.bundle import TYPES
from tnfast.data.synth import synthesize
from tnfast.model.own_landmark import OwnLandmark
from tnfast.own_effect import MIN_GENES, MIN_T, landmark_of_genes
from tnfast.predict import load_predictor
from tnfast.runs import read_run
from tnfast.train import train
from tnfast.train_config import resolve

L, T = 40, 3
TINY = Path(__file__).parent / "data" / "tiny_model.toml"


def test_landmark_of_genes():
    assert landmark_of_genes(["5", "7", "9", "11"], ["9", "5", "2"]).tolist() == [1, -1, 0, -1]
    assert landmark_of_genes([], ["1"]).tolist() == []


def _samples(seed: int, own: list[float], n_plain: int):
    """Training samples of type 0 only: genes 0..len(own)-1 are landmarks 3, 4, ... with their
    own landmark at ``own[i]`` landmark-sds from the mean; ``n_plain`` more genes are none."""
    rng = np.random.default_rng(seed)
    n_lm, n = len(own), len(own) + n_plain
    landmark = np.full(n + 3, -1)
    landmark[:n_lm] = np.arange(3, 3 + n_lm)
    sd = rng.uniform(0.5, 2.0, L)
    truth = rng.standard_normal((n, L)) * sd
    truth -= truth.mean(axis=0)  # scaled units are centred on the training mean
    truth[np.arange(n_lm), landmark[:n_lm]] = np.asarray(own) * sd[landmark[:n_lm]]
    genes = np.arange(n)
    return (torch.from_numpy(landmark), torch.from_numpy(genes), torch.zeros(n, dtype=torch.long),
            torch.from_numpy(truth).float())


def test_fit_matches_a_hand_computation():
    rng = np.random.default_rng(5)
    own = list(-5 + rng.standard_normal(12))
    landmark, genes, types, truth = _samples(0, own, 60)
    m = OwnLandmark(len(landmark), L, T)
    fit = m.fit(landmark, genes, types, truth)
    y = truth.double().numpy()
    sd = y.std(axis=0)
    lm = landmark.numpy()[:12]
    z = y[np.arange(12), lm] / sd[lm]
    se = z.std(ddof=1) / np.sqrt(12)
    assert fit == {0: {"n": 12, "z": round(z.mean(), 4), "se": round(se, 4), "on": True}}
    np.testing.assert_allclose(m.value[0].numpy(), z.mean() * sd, rtol=1e-5)
    assert m.on.tolist() == [True, False, False] and not m.value[1:].any()
    assert torch.equal(m.landmark, landmark)


@pytest.mark.parametrize("own, why", [
    ([-6.0, -5.5, -6.5, -5.0][:MIN_GENES - 1], "too few landmark genes"),
    ([1.0, -1.0] * 10, "a mean of 0"),
    ([MIN_T, -MIN_T + 0.5] * 3, "under MIN_T standard errors"),
])
def test_a_type_without_enough_genes_or_a_clear_effect_stays_off(own, why):
    m = OwnLandmark(len(own) + 33, L, T)
    fit = m.fit(*_samples(1, own, 30))
    assert fit[0]["n"] == len(own) and not fit[0]["on"], why
    assert not m.on.any() and not m.value.any()
    x = torch.randn(4, T, L)
    assert m(x, torch.arange(4)) is x  # off: predictions untouched


def test_forward_sets_only_the_own_landmark_of_landmark_genes_in_the_types_that_are_on():
    m = OwnLandmark(6, L, T)
    m.landmark.copy_(torch.tensor([-1, 7, 2, -1, 7, 30]))
    m.value.copy_(torch.randn(T, L))
    m.on.copy_(torch.tensor([True, False, True]))
    genes = torch.tensor([5, 0, 1, 3, 4, 2, 1])
    x = torch.randn(len(genes), T, L)
    x0, want = x.clone(), x.clone()
    for i, g in enumerate(genes.tolist()):
        lm = int(m.landmark[g])
        if lm >= 0:
            for t in (0, 2):
                want[i, t, lm] = m.value[t, lm]
    got = m(x, genes)
    assert torch.equal(got, want) and not torch.equal(got, x0)
    assert torch.equal(x, x0)  # the input is not modified in place


# --------------------------------------------------------------------------- a trained run

EFFECT = -5.0  # planted on RNAi only, in the landmark's training sds


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """The tiny synthetic bundle with 40 of its RNAi genes made landmarks (landmark ids renamed to
    theirs) and each one's RNAi signature at its own landmark set EFFECT sds below the mean."""
    d = tmp_path_factory.mktemp("own")
    b = synthesize("tiny", seed=2)
    s = b.signatures["RNAi"]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(s.gene), 40, replace=False)
    cols = rng.choice(len(b.landmarks), 40, replace=False)
    names = b.landmarks.astype(object)
    names[cols] = b.genes[s.gene[chosen]]
    b.landmarks = names.astype(str)
    rows = s.split == "train"
    mean, sd = s.values[rows].mean(axis=0), s.values[rows].std(axis=0)
    s.values[chosen, cols] = mean[cols] + EFFECT * sd[cols]
    b.save(d / "bundle")
    cfg = resolve("quick", TINY, [])
    run_dir, _ = train(d / "bundle", d / "run", cfg)
    return run_dir


def test_a_trained_run_fits_the_planted_effect_and_predicts_it(planted):
    run = read_run(planted)
    (member,) = run["members"]
    fit = member["own_landmark"]
    assert "OE" not in fit or not fit["OE"]["on"]  # nothing planted there
    assert member["arm_effect"] is None  # the bundle has no gene locations
    p = load_predictor(planted)
    b = p.bundle
    own = landmark_of_genes(b.genes, b.landmarks)
    s = b.signatures["RNAi"]
    y = s.values[s.split == "train"].astype(np.float64)
    lm = own[s.gene[s.split == "train"]]
    hit = np.flatnonzero(lm >= 0)
    # the planted entries widen their columns' sd, so z is a little above EFFECT
    z = ((y[hit, lm[hit]] - y.mean(axis=0)[lm[hit]]) / y.std(axis=0)[lm[hit]]).mean()
    assert fit["RNAi"]["on"] and fit["RNAi"]["n"] == len(hit) and z < -3
    assert fit["RNAi"]["z"] == pytest.approx(z, abs=1e-3)
    held = s.gene[(s.split != "train") & (own[s.gene] >= 0)]  # landmark genes the model never trained on
    assert len(held) >= 3
    pred = p.predict("RNAi", held)
    lm = own[held]
    np.testing.assert_allclose(pred[np.arange(len(held)), lm],
                               y.mean(axis=0)[lm] + z * y.std(axis=0)[lm], rtol=1e-4, atol=1e-5)


def test_a_run_saved_before_the_effect_predicts_without_it(planted, tmp_path):
    """model.pt without the own-landmark buffers (and a config without the option) loads, and
    predicts as the same weights with the effect off."""
    off, old = without_fitted_term(planted, tmp_path, "own_landmark", "own_landmark", len(TYPES))
    p = load_predictor(planted)
    genes = np.arange(p.bundle.n_genes)
    want = load_predictor(off).predict_types(["RNAi"], genes)
    np.testing.assert_array_equal(load_predictor(old).predict_types(["RNAi"], genes), want)
    changed = np.argwhere(p.predict_types(["RNAi"], genes) != want)
    own = landmark_of_genes(p.bundle.genes, p.bundle.landmarks)
    assert len(changed) and all(own[g] == lm for _, g, lm in changed)  # only landmark genes' own entries


def test_evaluate_shows_ridge_with_the_same_effect(planted):
    """The ridge + landmark effects baseline: the ridge's predictions with the effect the model
    fitted (the same training pool, so the same record) at the landmark genes' own landmark
    (the bundle has no locations: no arm effect)."""
    from tnfast.evaluate import evaluate

    ev = evaluate(planted, split="test")
    (member,) = read_run(planted)["members"]
    rnai = ev.summary["types"]["RNAi"]
    assert rnai["ridge_effects"]["own_landmark"] == member["own_landmark"]["RNAi"]
    assert rnai["ridge_effects"]["arm_effect"] is None
    assert all("ridge_effects" not in ev.summary["types"][t] for t in ("CRISPR", "OE"))
    d = ev.details["RNAi"]
    b = load_predictor(planted).bundle
    index = b.gene_index()
    own = landmark_of_genes(b.genes, b.landmarks)[[index[g] for g in d.gene_ids]]
    rows = np.flatnonzero(own >= 0)
    assert len(rows)
    ridge, with_own, model = d.preds["ridge"], d.preds["ridge_effects"], d.preds["model"]
    mask = np.zeros(ridge.shape, bool)
    mask[rows, own[rows]] = True
    np.testing.assert_array_equal(with_own[~mask], ridge[~mask])
    np.testing.assert_allclose(with_own[mask], model[mask], rtol=1e-4, atol=1e-5)
    assert rnai["ridge_effects"]["pearson_delta"] > rnai["ridge"]["pearson_delta"]


def test_own_landmark_text():
    from tnfast.train import own_landmark_text

    assert own_landmark_text({"RNAi": {"n": 46, "z": -5.3479, "se": 0.3417, "on": True},
                              "OE": {"n": 28, "z": 1.3951, "se": 0.6979, "on": False}}) == \
        "RNAi z -5.35 (46 genes), OE off (z +1.40 ± 0.70, 28 genes)"
