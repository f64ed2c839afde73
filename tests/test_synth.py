"""The synthetic default dataset: shape, network invariants, determinism, calibration, cache."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tnfast.data import synth
from tnfast.data.bundle import TYPES, load_bundle
from tnfast.data.synth import GENERATOR_VERSION, LAYERS, SCALES, default_bundle, synthesize
from tnfast.errors import InputError

LAYER_NAMES = ["disease", "drug", "complex", "pathway", "chromosome", "ppi", "sequence"]


@pytest.fixture(scope="module")
def tiny():
    return synthesize("tiny", seed=0)


@pytest.fixture(scope="module")
def small():
    return synthesize("small", seed=0)


def pcc_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a with the same row of b (0 for a constant row)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), 0.0)


def calibration(bundle, t: str) -> dict[str, float]:
    """The baselines of DESIGN.md on the test split of type t (PearsonΔ = PCC of deltas)."""
    s = bundle.signatures[t]
    train, test = s.rows("train"), s.rows("test")
    mean = s.values[train].mean(0)
    y = s.values[test] - mean
    # Average of the measured (training) neighbours' signatures, per layer, then over layers.
    total, layers = np.zeros_like(y, dtype=np.float64), np.zeros(len(test))
    for csr in bundle.networks.values():
        a = csr.to_scipy()[s.gene[test]][:, s.gene[train]]
        w = np.asarray(a.sum(1)).ravel()
        has = w > 0
        total[has] += (a @ (s.values[train] - mean))[has] / w[has, None]
        layers += has
    neighbours = total / np.maximum(layers, 1)[:, None]
    other = s.values[train][np.random.default_rng(0).integers(len(train), size=len(test))]
    return {
        "mean_pcc": pcc_rows(np.broadcast_to(mean, y.shape), y + mean).mean(),
        "random_train_delta": pcc_rows(other - mean, y).mean(),
        "neighbour_delta": pcc_rows(neighbours, y).mean(),
        "oracle_delta": pcc_rows(bundle.truth[t][s.gene[test]] - mean, y).mean(),
    }


def test_full_scale_parameters():
    full = SCALES["full"]
    assert full.n_genes == 26_945
    assert full.measured == {"RNAi": 4454, "CRISPR": 5139, "OE": 3538}
    assert full.n_edges == 7_500_000
    assert [x.name for x in LAYERS] == LAYER_NAMES
    assert sum(x.share for x in LAYERS) == pytest.approx(1.0)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_shapes_and_counts(scale, request):
    b = request.getfixturevalue(scale)
    p = SCALES[scale]
    assert b.genes.shape == (p.n_genes,) and len(set(b.genes.tolist())) == p.n_genes
    ids = b.genes.astype(np.int64)  # Entrez-like: integers as strings, not 0..n-1
    assert ids.min() > 0 and not np.array_equal(ids, np.arange(p.n_genes))
    assert b.landmarks.shape == (978,) and len(set(b.landmarks.tolist())) == 978
    assert b.landmarks.astype(np.int64).min() > 0
    if scale == "small":
        assert set(b.landmarks.tolist()) <= set(b.genes.tolist())
    assert list(b.networks) == LAYER_NAMES
    assert list(b.signatures) == list(TYPES) and list(b.truth) == list(TYPES)
    times_measured = np.zeros(p.n_genes, int)
    for t, s in b.signatures.items():
        assert len(s.gene) == p.measured[t] == len(np.unique(s.gene))
        assert s.values.shape == (p.measured[t], 978) and s.values.dtype == np.float32
        assert np.all(np.abs(s.values) <= 1)
        assert 0.1 < np.abs(s.values).mean() < 0.35  # like min-max-scaled L1000 signatures
        assert b.truth[t].shape == (p.n_genes, 978) and b.truth[t].dtype == np.float32
        times_measured[s.gene] += 1
    assert (times_measured == 2).sum() > 0.1 * p.measured["RNAi"]  # screens overlap
    assert (times_measured == 3).sum() > 0
    f = b.features
    assert f.values.shape == (p.n_genes, 64) and f.present.shape == (p.n_genes,)
    assert 0.4 < f.present.mean() < 0.9 and np.all(f.values[~f.present] == 0)
    assert b.meta["name"] == f"synthetic-{scale}"
    assert b.meta["source"] == f"tnfast synthetic generator v{GENERATOR_VERSION}, seed 0"
    assert b.meta["units"] == "synthetic, scaled like L1000 level-5 signatures in [-1, 1]"


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_csr_invariants(scale, request):
    b = request.getfixturevalue(scale)
    n = b.n_genes
    total = 0
    for name, csr in b.networks.items():
        assert csr.indptr.shape == (n + 1,) and csr.indptr[0] == 0
        assert np.all(np.diff(csr.indptr) >= 0) and csr.indptr[-1] == len(csr.indices)
        rows = np.repeat(np.arange(n), csr.degrees())
        assert np.all(csr.indices != rows), name  # no self-loops
        same_row = rows[1:] == rows[:-1]
        assert np.all(np.diff(csr.indices.astype(np.int64))[same_row] > 0), name  # sorted, dedup
        assert np.all(np.isfinite(csr.weights)) and np.all(csr.weights > 0)
        a = csr.to_scipy()
        assert (a != a.T).nnz == 0, name  # symmetric, same weights both ways
        assert 0 < (csr.degrees() > 0).sum() < n  # not every gene in every layer
        total += csr.nnz // 2
    assert total == pytest.approx(SCALES[scale].n_edges, rel=0.05)


def test_power_law_degrees(small):
    for name, ratio in (("disease", 10), ("ppi", 10), ("drug", 5), ("pathway", 5)):
        d = small.networks[name].degrees()
        assert d.max() > ratio * np.median(d[d > 0]), name
    union = sum(csr.degrees() for csr in small.networks.values())
    assert union.max() > 10 * np.median(union)


def test_deterministic_by_seed(tiny):
    again, other = synthesize("tiny", seed=0), synthesize("tiny", seed=1)
    assert np.array_equal(again.genes, tiny.genes)
    assert np.array_equal(again.landmarks, tiny.landmarks)
    for name, csr in tiny.networks.items():
        for x, y in zip(csr, again.networks[name]):
            assert np.array_equal(x, y)
    for t in TYPES:
        s, s2 = tiny.signatures[t], again.signatures[t]
        assert np.array_equal(s.gene, s2.gene) and np.array_equal(s.split, s2.split)
        assert np.array_equal(s.values, s2.values)
        assert np.array_equal(tiny.truth[t], again.truth[t])
    assert np.array_equal(tiny.features.values, again.features.values)
    assert not np.array_equal(tiny.genes, other.genes)
    assert not np.array_equal(tiny.truth["RNAi"], other.truth["RNAi"])
    assert tiny.networks["ppi"].nnz != other.networks["ppi"].nnz or not np.array_equal(
        tiny.networks["ppi"].indices, other.networks["ppi"].indices)


def test_splits_are_gene_disjoint_across_types(small):
    split_of: dict[int, str] = {}
    for s in small.signatures.values():
        for g, sp in zip(s.gene.tolist(), s.split.tolist()):
            assert split_of.setdefault(g, sp) == sp
    counts = {k: list(split_of.values()).count(k) for k in ("train", "valid", "test")}
    assert counts["train"] > 6 * counts["test"] > 0 and counts["valid"] > 0


@pytest.mark.parametrize("t", TYPES)
def test_calibration(small, t):
    # Measured on small, seed 0 (RNAi / CRISPR / OE); full, seed 0, in brackets:
    #   training mean PCC        0.75 / 0.78 / 0.78   (0.76 / 0.76 / 0.77); its PearsonΔ is 0
    #   random training gene Δ   0.01 / -0.04 / -0.04 (0.00 / 0.01 / -0.01)
    #   neighbour average Δ      0.31 / 0.33 / 0.35   (0.33 / 0.34 / 0.30)
    #   oracle (truth) Δ         0.84 / 0.82 / 0.81   (0.84 / 0.84 / 0.83)
    c = calibration(small, t)
    assert 0.6 < c["mean_pcc"] < 0.85
    assert abs(c["random_train_delta"]) < 0.1
    assert 0.15 < c["neighbour_delta"] < 0.45
    assert 0.7 < c["oracle_delta"] < 0.92
    assert c["neighbour_delta"] < c["oracle_delta"] - 0.3  # far from solved by neighbours


def test_features_carry_partial_signal(small):
    # Ridge from the features to the RNAi signatures: some signal, far from the oracle.
    # Measured on small, seed 0: PearsonΔ 0.34 (oracle 0.84); full: ~0.27.
    s, f = small.signatures["RNAi"], small.features
    train = s.rows("train")[f.present[s.gene[s.rows("train")]]]
    test = s.rows("test")[f.present[s.gene[s.rows("test")]]]
    mean = s.values[train].mean(0)
    x, xt = f.values[s.gene[train]] / 0.02, f.values[s.gene[test]] / 0.02
    w = np.linalg.solve(x.T @ x + 100 * np.eye(x.shape[1]), x.T @ (s.values[train] - mean))
    delta = pcc_rows(xt @ w, s.values[test] - mean).mean()
    assert 0.1 < delta < 0.6
    assert 0.01 < f.values[f.present].std() < 0.04  # small numbers, like real embeddings


def test_type_relations(small):
    delta = {t: small.truth[t] - small.truth[t].mean(0) for t in TYPES}
    oe_rnai = pcc_rows(delta["OE"], delta["RNAi"]).mean()
    crispr_rnai = pcc_rows(delta["CRISPR"], delta["RNAi"]).mean()
    # Measured on small, seed 0: OE~RNAi -0.46, CRISPR~RNAi 0.72.
    assert oe_rnai < -0.2
    assert crispr_rnai > 0.5
    # Still visible through the noise, for genes measured in both types.
    r, o = small.signatures["RNAi"], small.signatures["OE"]
    both, ri, oi = np.intersect1d(r.gene, o.gene, return_indices=True)
    assert len(both) > 20
    obs = pcc_rows(r.values[ri] - r.values.mean(0), o.values[oi] - o.values.mean(0)).mean()
    assert obs < -0.1


def test_progress_and_bad_scale():
    seen = []
    synthesize("tiny", progress=seen.append)
    assert seen[0] == "genes and landmarks" and any("ppi" in m for m in seen) and len(seen) >= 10
    with pytest.raises(InputError, match="unknown scale"):
        synthesize("huge")


def test_default_bundle_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TNFAST_CACHE", str(tmp_path))
    path = default_bundle("tiny", seed=0)
    assert path == tmp_path / f"synth-tiny-seed0-v{GENERATOR_VERSION}"
    b = load_bundle(path)
    fresh = synthesize("tiny", seed=0)
    assert np.array_equal(b.genes, fresh.genes)
    assert np.array_equal(b.signatures["OE"].values, fresh.signatures["OE"].values)
    assert np.array_equal(np.asarray(b.truth["CRISPR"]), fresh.truth["CRISPR"])
    assert b.meta["name"] == "synthetic-tiny"
    mtime = (path / "bundle.json").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("regenerated a cached bundle")

    monkeypatch.setattr(synth, "synthesize", boom)
    assert default_bundle("tiny", seed=0) == path
    assert (path / "bundle.json").stat().st_mtime_ns == mtime


def test_default_bundle_ignores_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("TNFAST_CACHE", str(tmp_path))
    name = f"synth-tiny-seed1-v{GENERATOR_VERSION}"
    # What a killed run can leave: Bundle.save's temporary sibling, half written, named after its
    # (now dead) process.
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # exited and reaped: its pid names no process
    leftover = tmp_path / f".{name}.{socket.gethostname()}.{child.pid}.0123456789ab.tmp"
    (leftover / "networks").mkdir(parents=True)
    (leftover / "genes.tsv").write_text("gene_id\n1\n")
    # And a directory at the final name without bundle.json.
    (tmp_path / name).mkdir()
    (tmp_path / name / "genes.tsv").write_text("gene_id\n1\n")
    seen = []
    path = default_bundle("tiny", seed=1, progress=seen.append)
    assert path == tmp_path / name and seen  # generated, not taken from the leftovers
    assert load_bundle(path).n_genes == SCALES["tiny"].n_genes
    assert not leftover.exists()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TNFAST_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert synth.cache_dir() == tmp_path / "xdg" / "tnfast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert synth.cache_dir() == Path(tmp_path / "home" / ".cache" / "tnfast")
    monkeypatch.setenv("TNFAST_CACHE", str(tmp_path / "mine"))
    assert synth.cache_dir() == tmp_path / "mine"


@pytest.mark.slow
def test_full_scale():
    """The real problem's shape; ~15 s and 1.5 GB, so it runs in CI too (deselect with -m 'not slow')."""
    b = synthesize("full", seed=0)
    p = SCALES["full"]
    assert b.n_genes == 26_945 and len(b.landmarks) == 978
    assert set(b.landmarks.tolist()) <= set(b.genes.tolist())
    assert {t: len(s.gene) for t, s in b.signatures.items()} == p.measured
    edges = sum(csr.nnz // 2 for csr in b.networks.values())
    assert edges == pytest.approx(7_500_000, rel=0.02)
    degrees = {name: csr.degrees() for name, csr in b.networks.items()}
    assert max(d.max() for d in degrees.values()) > 2000  # hubs with thousands of neighbours
    assert 0 < (sum(degrees.values()) == 0).sum() < 0.01 * b.n_genes  # a few genes in no layer
    for t in TYPES:
        c = calibration(b, t)
        assert 0.6 < c["mean_pcc"] < 0.85
        assert 0.15 < c["neighbour_delta"] < 0.45
        assert 0.7 < c["oracle_delta"] < 0.92
