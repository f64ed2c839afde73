"""Gene-level cross-validation (tnfast.benchmarks.crossval): folds, pooling, an end-to-end run."""

from pathlib import Path

import numpy as np
import pytest

from tnfast.benchmarks.crossval import crossval, fold_splits, main, pool
from tnfast.data.synth import synthesize

TINY = Path(__file__).parent / "data" / "tiny_model.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cv") / "tiny"
    synthesize("tiny", seed=2).save(d)
    return d


def test_every_measured_gene_is_test_in_exactly_one_fold_in_every_type(tiny):
    from tnfast.data.bundle import load_bundle

    b = load_bundle(tiny)
    splits = fold_splits(b, 4, seed=1)
    measured = np.unique(np.concatenate([s.gene for s in b.signatures.values()]))
    times_test = {int(g): 0 for g in measured}
    for split in splits:
        test_genes = set()
        for t, s in b.signatures.items():
            assert set(np.unique(split[t])) <= {"train", "valid", "test"} and len(split[t]) == len(s.gene)
            test_genes |= set(s.gene[split[t] == "test"].tolist())
        for t, s in b.signatures.items():  # a test gene is test in every type that measured it
            assert set(s.gene[split[t] != "test"].tolist()).isdisjoint(test_genes)
            valid = split[t] == "valid"
            assert 0 < valid.sum() < 0.3 * (split[t] != "test").sum()
        for g in test_genes:
            times_test[g] += 1
    assert set(times_test.values()) == {1}
    again = fold_splits(b, 4, seed=1)
    assert all(np.array_equal(a[t], c[t]) for a, c in zip(splits, again) for t in a)


def test_pool_weights_folds_by_their_genes():
    fold = lambda n, pd, pcc, se: {"types": {"OE": {"model": {"n": n, "pearson_delta": pd, "pcc": pcc,  # noqa: E731
                                                              "abs_pcc": pcc + 0.1, "pearson_delta_se": se}}}}
    got = pool([fold(10, 0.1, 0.5, 0.02), fold(30, 0.3, 0.7, 0.01)])["OE"]["model"]
    assert got["n"] == 40
    assert got["pearson_delta"] == pytest.approx((10 * 0.1 + 30 * 0.3) / 40)
    assert got["pcc"] == pytest.approx((10 * 0.5 + 30 * 0.7) / 40)
    assert got["abs_pcc"] == pytest.approx((10 * 0.6 + 30 * 0.8) / 40)
    assert got["pearson_delta_se"] == pytest.approx(np.sqrt((10 * 0.02) ** 2 + (30 * 0.01) ** 2) / 40)
    assert "model_lead" not in got


def test_pool_weights_the_model_lead_by_the_genes_of_each_fold():
    def fold(n, lead, se):
        return {"types": {"RNAi": {"ridge": {"n": n, "pearson_delta": 0.1, "pcc": 0.5, "pearson_delta_se": 0.02,
                                             "model_lead": lead, "model_lead_se": se}}}}

    got = pool([fold(10, 0.05, 0.01), fold(30, -0.01, 0.004)])["RNAi"]["ridge"]
    assert got["model_lead"] == pytest.approx((10 * 0.05 - 30 * 0.01) / 40)
    assert got["model_lead_se"] == pytest.approx(np.sqrt((10 * 0.01) ** 2 + (30 * 0.004) ** 2) / 40)
    old = fold(20, 0.0, 0.0)["types"]["RNAi"]["ridge"]
    del old["model_lead"], old["model_lead_se"]  # a fold evaluated before leads were reported
    assert "model_lead" not in pool([fold(10, 0.05, 0.01), {"types": {"RNAi": {"ridge": old}}}])["RNAi"]["ridge"]


def test_crossval_end_to_end_and_resume(tiny, tmp_path):
    from tnfast.data.bundle import load_bundle

    out = tmp_path / "cv"
    report = crossval(tiny, out, TINY, folds=2, log=lambda msg: None)
    b = load_bundle(tiny)
    for t, s in b.signatures.items():
        provs = report["types"][t]
        assert {"model", "mean", "ridge", "knn"} <= set(provs)
        assert provs["model"]["n"] == len(s.gene)  # every signature scored once
        assert provs["mean"]["pearson_delta"] == 0.0
        assert all(np.isfinite(m["pearson_delta"]) for m in provs.values())
        assert all(abs(m["pcc"]) <= m["abs_pcc"] + 1e-12 for m in provs.values())  # mean |PCC| >= |mean PCC|
        assert np.isfinite(provs["ridge"]["model_lead"]) and provs["ridge"]["model_lead_se"] > 0
        assert "model_lead" not in provs["model"] and "model_lead" not in provs["mean"]
        assert provs["mean"]["model_pcc_lead"] == pytest.approx(provs["model"]["pcc"] - provs["mean"]["pcc"])
    stamp = [(out / f"fold{k}" / "eval.json").stat().st_mtime_ns for k in range(2)]
    assert crossval(tiny, out, TINY, folds=2, log=lambda msg: None) == report  # nothing re-run
    assert stamp == [(out / f"fold{k}" / "eval.json").stat().st_mtime_ns for k in range(2)]


def test_bad_fold_count_is_one_line(tiny, tmp_path, capsys):
    assert main(["--data", str(tiny), "--out", str(tmp_path / "x"), "--folds", "1"]) == 2
    err = capsys.readouterr().err
    assert "--folds" in err and len(err.strip().splitlines()) == 1
