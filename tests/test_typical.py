"""The typical deviation (tnfast.typical, tnfast.model.typical): the direction and the
cross-fitted fit against loop-by-loop computations, the rules that keep it off, what prediction
adds, the baseline in evaluate, and a trained run on a bundle with a planted skew."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import without_fitted_term

from tnfast.data.bundle import TYPES
from tnfast.data.synth import synthesize
from tnfast.metrics import pearson_delta
from tnfast.model.typical import TypicalDeviation
from tnfast.own_effect import MIN_T
from tnfast.predict import load_predictor
from tnfast.runs import read_run
from tnfast.train import train, typical_text
from tnfast.train_config import resolve
from tnfast.typical import FOLDS, MIN_STEP, SIZES, _pcc_by_size, typical_baseline, typical_direction, typical_fit

L = 30
TINY = Path(__file__).parent / "data" / "tiny_model.toml"


def _pearson(a, b) -> float:
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def _direction_by_loops(y: np.ndarray) -> np.ndarray:
    mean = [sum(y[i][j] for i in range(len(y))) / len(y) for j in range(y.shape[1])]
    total = np.zeros(y.shape[1])
    for row in y:
        d = np.array([row[j] - mean[j] for j in range(y.shape[1])])
        d = d - d.sum() / len(d)
        norm = np.sqrt((d * d).sum())
        if norm > 0:
            total += d / norm
    return total / np.sqrt((total * total).sum())


def test_typical_direction_by_hand():
    # mean (1, 1, 1, 1); deviations (2, -2, 0, 0) twice and (-4, 4, 0, 0): unit (1, -1, 0, 0)/sqrt2
    # twice and (-1, 1, 0, 0)/sqrt2 once; their mean points along (1, -1, 0, 0)
    y = np.array([[3.0, -1, 1, 1], [3, -1, 1, 1], [-3, 5, 1, 1]])
    np.testing.assert_allclose(typical_direction(y), np.array([1, -1, 0, 0]) / np.sqrt(2), atol=1e-12)
    y = np.random.default_rng(0).standard_normal((25, 11)) * np.linspace(0.2, 3, 11)
    np.testing.assert_allclose(typical_direction(y), _direction_by_loops(y), atol=1e-12)
    assert not typical_direction(np.ones((4, 6))).any()  # every row the mean: no direction


def test_pcc_by_size_is_the_mean_pcc_at_each_size():
    rng = np.random.default_rng(1)
    base, step, y = rng.standard_normal((3, 9, L))
    step[0] = 0.0  # a row with no step
    got = _pcc_by_size(base, step, y)
    want = [np.mean([_pearson(b + c * s, r) for b, s, r in zip(base, step, y)]) for c in SIZES]
    np.testing.assert_allclose(got, want, atol=1e-12)


def _skewed(seed: int, n: int, strong: float = 0.15, shift: float = 0.4) -> np.ndarray:
    """n signatures around a shared pattern: most move a little along -v, a few far along +v
    (their mean deviation is 0), plus noise. The typical direction is -v."""
    rng = np.random.default_rng(seed)
    pattern = rng.standard_normal(L) * 2
    v = rng.standard_normal(L)
    v -= v.mean()
    v /= np.linalg.norm(v)
    k = int(round(strong * n))
    along = np.r_[np.full(k, shift * (n - k) / k), np.full(n - k, -shift)]
    return pattern + along[:, None] * v * 3 + rng.standard_normal((n, L)) * 0.5, -v


def test_fit_matches_a_cross_fit_by_loops():
    y, _ = _skewed(2, 47, shift=0.8)
    record, dev = typical_fit(y)
    n = len(y)
    pd, bases, steps = [], [], []
    for i in range(n):
        rest = np.array([k for k in range(n) if k % FOLDS != i % FOLDS])
        base = y[rest].mean(axis=0)
        step = _direction_by_loops(y[rest]) * _median_size(y[rest])
        pd.append(_pearson(step, y[i] - base))
        bases.append(base)
        steps.append(step)
    pcc = [np.mean([_pearson(b + c * s, r) for b, s, r in zip(bases, steps, y)]) for c in SIZES]
    size = round(float(SIZES[int(np.argmax(pcc))]), 4)
    se = np.std(pd, ddof=1) / np.sqrt(n)
    assert record == {"n": n, "pearson_delta": round(float(np.mean(pd)), 4), "se": round(float(se), 4),
                      "size": size, "on": bool(np.mean(pd) > MIN_T * se and size > 0)}
    assert record["on"] and size > 0
    np.testing.assert_allclose(dev, size * _median_size(y) * _direction_by_loops(y), atol=1e-12)
    y[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        typical_fit(y)


def _median_size(y: np.ndarray) -> float:
    sizes = []
    for row in y:
        d = row - y.mean(axis=0)
        d = d - d.mean()
        sizes.append(np.sqrt((d * d).sum()))
    return float(np.median(sizes))


def test_a_planted_skew_is_found_and_symmetric_noise_is_not():
    y, want = _skewed(3, 200)
    record, dev = typical_fit(y)
    assert record["on"] and record["pearson_delta"] > MIN_T * record["se"]
    assert _pearson(dev, want) > 0.95
    noise = np.random.default_rng(4).standard_normal((200, L)) + np.arange(L)
    record, dev = typical_fit(noise)
    assert not record["on"] and abs(record["pearson_delta"]) < 3 * record["se"]
    assert dev is not None  # the baseline still has its direction
    assert typical_fit(y[:2 * FOLDS - 1]) == (None, None)  # too few signatures to cross-fit


def test_with_uneven_sizes_it_points_from_the_training_mean_towards_the_centre():
    """No shared direction at all (every deviation as likely as its opposite), but sizes that
    vary as signatures' do: the sample mean is pulled by the few large deviations, most
    signatures lie on the other side of it, and the direction finds that side (what PearsonΔ
    around a training mean rewards; see the module doc)."""
    rng = np.random.default_rng(8)
    centre = rng.standard_normal(L) * 2
    n = 150
    d = rng.standard_normal((n, L)) * np.exp(1.2 * rng.standard_normal(n))[:, None]
    y = centre + d
    record, dev = typical_fit(y)
    assert record["pearson_delta"] > MIN_T * record["se"]
    assert _pearson(dev, centre - y.mean(axis=0)) > 0.5
    record, _ = typical_fit(centre + rng.standard_normal((n, L)))  # even sizes: nothing to find
    assert abs(record["pearson_delta"]) < 3 * record["se"]


def test_the_baseline_is_the_mean_plus_the_fit_at_least_the_smallest_size():
    noise = np.random.default_rng(5).standard_normal((60, L)) + np.arange(L)
    record, dev = typical_fit(noise)
    pred, rec = typical_baseline(noise, 4)
    assert rec == record and pred.shape == (4, L)
    np.testing.assert_allclose(pred, np.broadcast_to(noise.mean(axis=0) + dev, (4, L)))
    assert np.linalg.norm(dev) == pytest.approx(max(record["size"], MIN_STEP) * _median_size(noise))
    assert typical_baseline(noise[:5], 3) == (None, None)


def test_module_fit_in_scaled_units_equals_the_fit_in_signature_units():
    rng = np.random.default_rng(6)
    y0, _ = _skewed(7, 120)
    y1 = rng.standard_normal((40, L))  # symmetric: off
    mean = torch.from_numpy(np.stack([y1.mean(0), y1.mean(0), y0.mean(0)]))
    std = torch.from_numpy(np.stack([y1.std(0), y1.std(0), y0.std(0)]))
    types = torch.tensor([2] * 120 + [0] * 40)
    raw = torch.from_numpy(np.concatenate([y0, y1]))
    scaled = (raw - mean[types]) / std[types]
    m = TypicalDeviation(L, 3)
    fits = m.fit(types, scaled.float(), mean.float(), std.float())
    assert set(fits) == {0, 2} and fits[2]["on"] and not fits[0]["on"]
    assert fits[2] == typical_fit(y0)[0] and fits[0] == typical_fit(y1)[0]
    np.testing.assert_allclose(m.value[2].double().numpy() * y0.std(0), typical_fit(y0)[1], rtol=1e-4, atol=1e-6)
    assert m.on.tolist() == [False, False, True] and not m.value[:2].any()


def test_forward_adds_the_value_in_the_types_that_are_on():
    m = TypicalDeviation(L, 3)
    x = torch.randn(5, 3, L)
    assert torch.equal(m(x), x)  # nothing fitted
    m.value.copy_(torch.randn(3, L))
    m.on.copy_(torch.tensor([True, False, True]))
    x0 = x.clone()
    got = m(x)
    assert torch.equal(got[:, 1], x0[:, 1])
    for t in (0, 2):
        torch.testing.assert_close(got[:, t], x0[:, t] + m.value[t], rtol=0, atol=0)
    assert torch.equal(x, x0)  # not in place


def test_typical_text():
    assert typical_text({"RNAi": {"n": 212, "pearson_delta": 0.0198, "se": 0.0111, "size": 0.02, "on": False},
                         "OE": {"n": 158, "pearson_delta": 0.0907, "se": 0.0233, "size": 0.06, "on": True}}) == \
        "OE 0.06 (PearsonΔ +0.091 ± 0.023 held out); RNAi off"


# --------------------------------------------------------------------------- a trained run

@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """The tiny synthetic bundle whose OE signatures get a planted skew: most of them moved a
    little one way, a sixth of them far the other (their mean deviation unchanged)."""
    d = tmp_path_factory.mktemp("typical")
    b = synthesize("tiny", seed=2)
    s = b.signatures["OE"]
    rng = np.random.default_rng(0)
    v = rng.standard_normal(len(b.landmarks))
    v -= v.mean()
    v *= 2.0 * np.linalg.norm(s.values - s.values.mean(0), axis=1).mean() / np.linalg.norm(v)
    strong = rng.random(len(s.gene)) < 1 / 6
    along = np.where(strong, (~strong).sum() / max(strong.sum(), 1), -1.0)
    s.values = (s.values + along[:, None] * v * 0.6).astype(s.values.dtype)
    b.save(d / "bundle")
    run_dir, _ = train(d / "bundle", d / "run", resolve("quick", TINY, []))
    return run_dir


def test_a_trained_run_fits_the_planted_skew_and_adds_it(planted, tmp_path):
    (member,) = read_run(planted)["members"]
    fit = member["typical_deviation"]
    assert fit["OE"]["on"] and fit["OE"]["size"] > 0
    p = load_predictor(planted)
    s = p.bundle.signatures["OE"]
    record, dev = typical_fit(s.values[s.split == "train"])
    assert fit["OE"] == record
    # the same weights with the term off, and as saved before it existed: the difference is
    # the fitted deviation, for every gene, in OE alone
    off, old = without_fitted_term(planted, tmp_path, "typical", "typical_deviation", len(TYPES))
    genes = np.arange(p.bundle.n_genes)
    got = p.predict_types(list(TYPES), genes)
    want = load_predictor(off).predict_types(list(TYPES), genes)
    np.testing.assert_array_equal(load_predictor(old).predict_types(list(TYPES), genes), want)
    on = [TYPES.index(t) for t in TYPES if fit.get(t, {}).get("on")]
    for ti in range(len(TYPES)):
        if ti in on:
            np.testing.assert_allclose(got[ti] - want[ti], np.broadcast_to(dev, got[ti].shape), rtol=1e-3, atol=1e-5)
        else:
            np.testing.assert_array_equal(got[ti], want[ti])


def test_evaluate_shows_the_typical_deviation_beside_the_model(planted):
    from tnfast.evaluate import evaluate

    ev = evaluate(planted, split="test")
    b = load_predictor(planted).bundle
    for t in TYPES:
        s = b.signatures[t]
        pool = s.values[s.split == "train"]
        pred, record = typical_baseline(pool, len(ev.details[t].gene_ids))
        summary = ev.summary["types"][t]["typical"]
        assert summary["fit"] == record
        np.testing.assert_allclose(ev.details[t].preds["typical"], pred)
        scores = pearson_delta(pred, ev.details[t].truth, ev.details[t].mean)
        assert summary["pearson_delta"] == pytest.approx(scores.mean(), abs=1e-12)
        assert np.isfinite(summary["model_lead"]) and np.isfinite(summary["model_lead_se"])
    oe = ev.summary["types"]["OE"]
    assert oe["typical"]["pearson_delta"] > 0.3  # the planted skew, scored on the test genes
