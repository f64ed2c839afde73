"""`tnfast evaluate`: metrics against hand values, baselines on toy problems with known answers,
the flags, the report, the JSON schema, truth files, and the command line end to end."""

import json
import re

import numpy as np
import pytest
from conftest import tnfast
from scipy.stats import ks_2samp

from tnfast.baselines import (knn_baseline, knn_predict, mean_baseline, network_average,
                              other_type_baseline, ridge_baseline, total_degree)
from tnfast.data.bundle import load_bundle
from tnfast.data.csr import build_csr
from tnfast.data.gctx import GCT, write_gctx
from tnfast.errors import InputError
from tnfast.evaluate import METRICS, NO_BETTER, PREDICTORS, evaluate, inputs_ceiling, score, write_json
from tnfast.metrics import (abs_pearson, ks_d, retrieval_ranks, retrieval_summary, row_mse,
                            top_k_direction)
from tnfast.report import plot_training_curves, read_metrics_jsonl, write_report
from tnfast.ridge import ALPHAS


# --------------------------------------------------------------------------- metrics

def test_abs_pcc_mse_hand_values():
    np.testing.assert_allclose(abs_pearson([[1, 2, 3], [1, 2, 3]], [[3, 2, 1], [2, 4, 6]]), [1.0, 1.0])
    np.testing.assert_allclose(row_mse([[0, 0], [1, 3]], [[1, 1], [1, 1]]), [1.0, 2.0])


def test_ks_d_hand_value_and_scipy():
    # ECDFs of {0,1,2,3} and {2,3,4,5}: at x=1 they are 0.5 and 0 -> D = 0.5
    assert ks_d([[0, 1], [2, 3]], [[2, 3], [4, 5]]) == pytest.approx(0.5)
    assert ks_d([[1, 2, 3]], [[1, 2, 3]]) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):  # ties included: integer values
        a = rng.integers(0, 6, size=(rng.integers(1, 6), 4)).astype(float)
        b = rng.integers(1, 8, size=(rng.integers(1, 6), 4)).astype(float)
        assert ks_d(a, b) == pytest.approx(ks_2samp(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_top_k_direction_hand_value():
    pred = np.array([[1.0, -1.0, 1.0, 1.0]])
    truth = np.array([[5.0, -4.0, -3.0, 0.1]])
    # top-3 by |truth|: landmarks 0, 1, 2; signs agree on 0 and 1, not on 2
    np.testing.assert_allclose(top_k_direction(pred, truth, k=3), [2 / 3])
    np.testing.assert_allclose(top_k_direction(pred, truth, k=1), [1.0])
    np.testing.assert_allclose(top_k_direction(-pred, truth, k=50), [0.25])  # k capped at L


def test_retrieval_ranks_hand_values():
    t0, t1, t2 = [1, 2, 3, 4], [1, 2, 4, 3], [4, 3, 2, 1]
    truth = np.array([t0, t1, t2], float)
    # PCC(t0, t1) = 0.8, PCC(t0, t2) = -1, PCC(t1, t2) = -0.8
    pred = np.array([t1, t0, t2], float)  # genes 0 and 1 swapped
    ranks = retrieval_ranks(pred, truth)
    np.testing.assert_allclose(ranks, [2, 2, 1])
    s = retrieval_summary(ranks)
    assert s == {"retrieval_median_rank": 2.0, "retrieval_top1": pytest.approx(1 / 3), "retrieval_top10": 1.0}
    # a constant prediction ties with everything: the chance rank (n + 1) / 2
    np.testing.assert_allclose(retrieval_ranks(np.ones((3, 4)), truth), [2, 2, 2])
    # centred on the training mean, a prediction equal to it is constant too
    np.testing.assert_allclose(retrieval_ranks(np.tile(t0, (3, 1)), truth, center=np.array(t0, float)), [2, 2, 2])
    # predictions for a subset of the genes, ranked among all of them
    np.testing.assert_allclose(retrieval_ranks(np.array([t2, t0], float), truth, true_index=[2, 1]), [1, 2])


# --------------------------------------------------------------------------- baselines

def test_knn_copies_and_k_chosen_on_valid():
    x_train = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], float)
    y_train = np.array([[1, 1], [1, 1], [5, 5], [5, 5]], float)
    # the neighbours of a query are exact copies of it (up to scale: cosine)
    pred, k = knn_baseline(x_train, y_train, np.array([[2, 0]]), np.array([[1.0, 1.0]]), np.array([[0, 3.0]]))
    assert k in (1, 2)  # k = 3 or more mixes the clusters and loses on valid
    np.testing.assert_allclose(pred, [[5, 5]])
    # an all-zero input has no neighbours: the training mean
    np.testing.assert_allclose(knn_predict(x_train, y_train, np.zeros((1, 2)), 2), [[3, 3]])
    np.testing.assert_allclose(knn_predict(x_train, y_train, np.array([[1, 0]]), 4), [[3, 3]])


def test_network_average_on_path_graph():
    # path 0-1-2-3-4 (weights 1, 3, 1, 1); training genes 0, 2, 4; evaluated 1, 3; gene 5 isolated
    layer = build_csr(np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), 6, np.array([1, 3, 1, 1], np.float32))
    y = np.array([[0.0, 4.0], [4.0, 0.0], [8.0, 8.0]])  # genes 0, 2, 4
    mean = y.mean(0)
    pred, layers = network_average({"path": layer}, np.array([0, 2, 4]), y, np.array([1, 3, 5]))
    np.testing.assert_allclose(pred[0], (1 * y[0] + 3 * y[1]) / 4)
    np.testing.assert_allclose(pred[1], (y[1] + y[2]) / 2)
    np.testing.assert_allclose(pred[2], mean)  # no measured neighbour: the training mean
    np.testing.assert_array_equal(layers, [1, 1, 0])
    # a second layer linking 1 to 4: per-layer averages, then averaged over layers
    other = build_csr(np.array([1]), np.array([4]), 6)
    pred2, layers2 = network_average({"path": layer, "other": other}, np.array([0, 2, 4]), y, np.array([1]))
    np.testing.assert_allclose(pred2[0], ((1 * y[0] + 3 * y[1]) / 4 + y[2]) / 2)
    np.testing.assert_array_equal(layers2, [2])
    np.testing.assert_array_equal(total_degree({"path": layer, "other": other}, 6), [1, 3, 2, 2, 2, 0])


def test_other_type_mean_and_ridge_baselines():
    mean_t = np.array([1.0, 1.0])
    others = {"CRISPR": (np.array([7, 3]), np.array([[2.0, 0.0], [5.0, 5.0]]), np.array([1.0, 0.0])),
              "OE": (np.array([3, 9]), np.array([[0.0, 0.0], [9.0, 9.0]]), np.array([0.0, 0.0]))}
    pred, has, src = other_type_baseline("RNAi", np.array([3, 9, 4]), mean_t, others)
    # gene 3: CRISPR preferred over OE; its deviation from the CRISPR mean, on the RNAi mean
    np.testing.assert_allclose(pred[0], mean_t + [5.0, 5.0] - [1.0, 0.0])
    np.testing.assert_allclose(pred[1], mean_t + [9.0, 9.0])
    assert np.isnan(pred[2]).all()
    assert has.tolist() == [True, True, False] and src.tolist() == ["CRISPR", "OE", ""]
    np.testing.assert_allclose(mean_baseline(np.array([[0.0, 2.0], [2.0, 4.0]]), 3), [[1, 3]] * 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = x @ np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]) + 3
    pred, model = ridge_baseline(x[:40], y[:40], x[40:50], y[40:50], x[50:])
    np.testing.assert_allclose(pred, y[50:], atol=0.05)
    assert model.alpha <= 1.0


# --------------------------------------------------------------------------- scoring and flags

def _toy(seed=0, n=30, L=40):
    rng = np.random.default_rng(seed)
    shared = 3 * rng.normal(size=L)
    effect = rng.normal(size=(n, L))
    truth = shared + effect
    mean = shared + 0.01 * rng.normal(size=L)
    return truth, mean, effect


def test_model_predicting_the_training_mean_is_flagged():
    truth, mean, _ = _toy()
    summary, per_sig = score(truth, {"model": np.broadcast_to(mean.astype(np.float32), truth.shape),
                                     "mean": np.broadcast_to(mean, truth.shape)}, mean)
    assert summary["model"]["pcc"] > 0.8  # the shared pattern: high PCC ...
    assert summary["model"]["pearson_delta"] == 0.0  # ... and nothing learned (float32 rounding is no signal)
    assert summary["mean"]["model_pcc_lead"] == pytest.approx(0.0, abs=1e-6)
    assert any(f.startswith("the model's PCC is not 2 paired s.e. above the training mean's") for f in summary["flags"])
    np.testing.assert_array_equal(per_sig["model"]["pearson_delta"], 0.0)
    assert summary["model"]["retrieval_median_rank"] == (len(truth) + 1) / 2
    assert any(NO_BETTER in f for f in summary["flags"])


def test_a_model_with_signal_is_not_flagged_but_a_better_baseline_is():
    truth, mean, effect = _toy()
    rng = np.random.default_rng(1)
    good = mean + effect + 0.5 * rng.normal(size=truth.shape)
    weak = mean + effect + 3 * rng.normal(size=truth.shape)
    summary, _ = score(truth, {"model": weak, "mean": np.broadcast_to(mean, truth.shape), "knn": good}, mean)
    assert summary["model"]["pearson_delta"] > 0.1
    assert not any(NO_BETTER in f for f in summary["flags"])
    assert any(f.startswith("kNN matches or beats the model") for f in summary["flags"])
    assert summary["knn"]["retrieval_top1"] > 0.9
    assert set(summary["model"]) == {"n", *METRICS, "pearson_delta_se"}


def _pd_rows(pred, truth, mean):
    """PearsonΔ per row by np.corrcoef, one row at a time (independent of tnfast.metrics)."""
    return np.array([np.corrcoef(p - mean, t - mean)[0, 1] for p, t in zip(pred, truth)])


def test_model_lead_is_the_paired_difference_and_a_small_one_is_flagged():
    truth, mean, effect = _toy()
    rng = np.random.default_rng(2)
    model = mean + effect + 1.0 * rng.normal(size=truth.shape)
    close = model + 0.15 * rng.normal(size=truth.shape)  # the model's own errors and a little more
    far = mean + effect + 4.0 * rng.normal(size=truth.shape)
    partial = far.copy()
    partial[::3] = np.nan  # a baseline without a prediction for a third of the genes
    summary, _ = score(truth, {"model": model, "mean": np.broadcast_to(mean, truth.shape), "knn": close,
                               "ridge": far, "other_type": partial}, mean)
    m = _pd_rows(model, truth, mean)
    for name, pred, rows in (("knn", close, slice(None)), ("ridge", far, slice(None)),
                             ("other_type", partial, np.arange(len(truth)) % 3 != 0)):
        d = m[rows] - _pd_rows(pred[rows], truth[rows], mean)
        assert summary[name]["model_lead"] == pytest.approx(d.mean(), abs=1e-9)
        assert summary[name]["model_lead_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=1e-6)
    assert "model_lead" not in summary["model"] and "model_lead" not in summary["mean"]
    pcc = np.array([np.corrcoef(p, t)[0, 1] for p, t in zip(model, truth)])
    d = pcc - np.array([np.corrcoef(mean, t)[0, 1] for t in truth])
    assert summary["mean"]["model_pcc_lead"] == pytest.approx(d.mean(), abs=1e-9)
    assert summary["mean"]["model_pcc_lead_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=1e-6)
    lead, se = summary["mean"]["model_pcc_lead"], summary["mean"]["model_pcc_lead_se"]
    assert 0 < lead <= 2 * se  # a little gene-specific signal barely moves the PCC: flagged
    assert f"the model's PCC is not 2 paired s.e. above the training mean's ({lead:+.4f} ± {se:.4f})" in summary["flags"]
    # paired: far below the s.e. of the model's score alone, which is what lets a small lead be real
    assert summary["knn"]["model_lead_se"] < summary["model"]["pearson_delta_se"] / 3
    lead, se = summary["knn"]["model_lead"], summary["knn"]["model_lead_se"]
    assert 0 < lead <= 2 * se  # the case is what it claims to be
    assert f"the model's lead over kNN on PearsonΔ is within 2 paired s.e. ({lead:+.3f} ± {se:.3f})" in summary["flags"]
    for name in ("ridge", "other_type"):  # clear leads are not flagged
        assert summary[name]["model_lead"] > 2 * summary[name]["model_lead_se"]
    assert len(summary["flags"]) == 2


def test_inputs_ceiling_reads_the_truth_of_the_other_genes_only():
    """A truth linear in the inputs is recovered exactly for the evaluated genes, whatever their
    own truth holds: it never enters the fit."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((211, 7))
    w = rng.standard_normal((7, 5))
    truth = x @ w + 0.5
    genes = np.array([0, 5, 17, 99, 210])
    spoiled = truth.copy()
    spoiled[genes] = 1e3 * rng.standard_normal((len(genes), 5))
    pred, alpha = inputs_ceiling(x, spoiled, genes)
    assert alpha == min(ALPHAS)  # noise-free: the least penalty fits the tuning tenth best
    np.testing.assert_allclose(pred, truth[genes], atol=1e-3)


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """tnfast data synth --scale tiny, tnfast train, tnfast evaluate --json --report: as a user runs them."""
    d = tmp_path_factory.mktemp("evaluate")
    r = tnfast("data", "synth", "--out", d / "tiny", "--scale", "tiny", "--seed", "5", cwd=d)
    assert r.returncode == 0, r.stderr
    r = tnfast("train", "--model", "ridge", "--data", d / "tiny", "--out", d / "run", cwd=d)
    assert r.returncode == 0, r.stderr
    r = tnfast("evaluate", "--run", d / "run", "--json", d / "eval.json", "--report", d / "report", cwd=d)
    assert r.returncode == 0, r.stderr
    return d, r


def test_cli_tables_json_schema_and_report(cli):
    d, r = cli
    for word in ("RNAi", "CRISPR", "OE", "PearsonΔ", "model", "mean", "ridge", "ridge + residual", "kNN", "network",
                 "oracle"):
        assert word in r.stdout
    assert re.search(r"kNN: k \d+, model lead [+-]\d\.\d{3} ± \d\.\d{3} \(paired s\.e\.\)", " ".join(r.stdout.split()))
    doc = json.loads((d / "eval.json").read_text())
    assert doc["split"] == "test"
    bundle = load_bundle(d / "tiny", truth=False)
    for t, s in bundle.signatures.items():
        ts = doc["types"][t]
        assert ts["n"] == len(s.rows("test"))
        for name in PREDICTORS:
            if name in ("other_type", "ridge_effects") and name not in ts:  # (no landmark genes or locations here)
                continue
            assert set(METRICS) <= set(ts[name]), (t, name)
            assert all(isinstance(ts[name][k], float | int) for k in METRICS)
        assert ts["mean"]["pearson_delta"] == 0.0
        assert ts["oracle"]["pearson_delta"] > ts["model"]["pearson_delta"]
        # the inputs' ceiling learns from the truth of every other gene; the ridge from a few noisy ones
        assert ts["ridge"]["pearson_delta"] < ts["oracle_inputs"]["pearson_delta"] < ts["oracle"]["pearson_delta"]
        assert "model_lead" not in ts["oracle_inputs"] and ts["oracle_inputs"]["alpha"] > 0
        # kNN predicts every gene: the mean of the paired differences is the difference of the means
        assert ts["knn"]["model_lead"] == pytest.approx(ts["model"]["pearson_delta"] - ts["knn"]["pearson_delta"])
        assert ts["knn"]["model_lead_se"] > 0
        assert set(ts["strata"]) == {"measured_in_other_types", "degree_tertile"}
        assert sum(g["n"] for g in ts["strata"]["degree_tertile"].values()) == ts["n"]
        if "other_type" in ts:
            assert sum(ts["other_type"]["from"].values()) == ts["other_type"]["n"] <= ts["n"]
    # the run's ridge is the model: said once, not flagged as a baseline beating it
    assert not any("ridge matches" in f for f in doc["flags"])
    index = (d / "report" / "index.html").read_text()
    pngs = sorted(p.name for p in (d / "report").glob("*.png"))
    assert {"distributions.png", "degree_tertiles.png", "scatter.png"} <= set(pngs)
    for png in pngs:
        assert f"src='{png}'" in index and (d / "report" / png).stat().st_size > 1000
    assert set(re.findall(r"src='([^']+)'", index)) == set(pngs)
    assert "no training curves" in index and "PearsonΔ" in index
    assert json.loads((d / "report" / "summary.json").read_text())["types"].keys() == doc["types"].keys()


def test_evaluate_matches_train_scores(cli):
    d, _ = cli
    ev = evaluate(run=d / "run")
    run = json.loads((d / "run" / "run.json").read_text())
    for t, ts in ev.summary["types"].items():
        expected = run["metrics"][t]["test"]
        for who in ("model", "mean", "oracle"):
            assert ts[who]["pcc"] == pytest.approx(expected[who]["pcc"], abs=1e-5)
            assert ts[who]["pearson_delta"] == pytest.approx(expected[who]["pearson_delta"], abs=1e-4)
            assert ts[who]["mse"] == pytest.approx(expected[who]["mse"], rel=1e-4)


def test_truth_from_gctx_and_tsv_files(cli, tmp_path):
    d, _ = cli
    bundle = load_bundle(d / "tiny", truth=False)
    s = bundle.signatures["RNAi"]
    rows = s.rows("test")
    genes = bundle.genes[s.gene[rows]]
    # the test signatures, one of them split into two columns that average back to it,
    # plus a gene the bundle does not know
    v = s.values[rows].astype(np.float64)
    cols = [v[i] for i in range(len(rows))] + [v[0] - 0.1, v[0] + 0.1, v[1]]
    pert_genes = list(genes) + [genes[0], genes[0], "999999999"]
    cols[0] = v[0] + 0.3  # replaced: the two extra columns and this one average to v[0] + 0.1
    matrix = np.stack(cols, axis=1).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(bundle.landmarks))  # any landmark order
    gct = GCT(matrix[order], bundle.landmarks[order], np.array([f"trt_sh:{i}" for i in range(matrix.shape[1])]),
              col_meta={"pert_type": np.array(["trt_sh"] * matrix.shape[1]),
                        "pert_gene_id": np.array(pert_genes).astype(np.int64)})
    write_gctx(tmp_path / "truth.gctx", gct)
    ev = evaluate(run=d / "run", truth=[tmp_path / "truth.gctx"])
    assert list(ev.summary["types"]) == ["RNAi"] and ev.summary["split"] == "truth-files"
    got = ev.summary["types"]["RNAi"]
    assert got["n"] == len(rows)
    assert any("not in the bundle" in n for n in ev.summary["notes"])
    detail = ev.details["RNAi"]
    i0 = detail.gene_ids.tolist().index(genes[0])
    np.testing.assert_allclose(detail.truth[i0], v[0] + 0.1, atol=1e-5)
    # the same signatures as a TSV (type given): exactly the test split's scores
    ev_split = evaluate(run=d / "run", split="test")
    header = "gene_id\t" + "\t".join(bundle.landmarks) + "\n"
    body = "".join(g + "\t" + "\t".join(f"{x:.7g}" for x in row) + "\n" for g, row in zip(genes, v))
    (tmp_path / "truth.tsv").write_text(header + body)
    ev_tsv = evaluate(run=d / "run", truth=[f"RNAi={tmp_path / 'truth.tsv'}"])
    for name in ("model", "mean", "ridge", "ridge_residual", "knn", "network"):
        assert ev_tsv.summary["types"]["RNAi"][name]["pearson_delta"] == pytest.approx(
            ev_split.summary["types"]["RNAi"][name]["pearson_delta"], abs=1e-4), name
    with pytest.raises(InputError, match="needs its type"):
        evaluate(run=d / "run", truth=[tmp_path / "truth.tsv"])


def test_preds_store_mean_model_is_flagged(cli, tmp_path):
    zarr = pytest.importorskip("zarr")
    from tnfast.infer import infer

    d, _ = cli
    infer(tmp_path / "preds.zarr", d / "run", chunk=50)
    from_store = evaluate(preds=tmp_path / "preds.zarr", data=d / "tiny")
    from_run = evaluate(run=d / "run")
    for t, ts in from_run.summary["types"].items():
        assert from_store.summary["types"][t]["model"]["pearson_delta"] == pytest.approx(ts["model"]["pearson_delta"], abs=1e-6)
    # overwrite the predictions with the training mean of each type
    root = zarr.open_group(tmp_path / "preds.zarr", mode="r+")
    bundle = load_bundle(d / "tiny", truth=False)
    types = [str(x) for x in root["perturbation"][:].tolist()]
    for i, t in enumerate(types):
        s = bundle.signatures[t]
        root["predictions"][i] = np.broadcast_to(s.values[s.rows("train")].mean(0), root["predictions"].shape[1:])
    ev = evaluate(preds=tmp_path / "preds.zarr", data=d / "tiny")
    for t, ts in ev.summary["types"].items():
        assert ts["model"]["pearson_delta"] == 0.0
        assert any(f.startswith(f"{t}: model is {NO_BETTER}") for f in ev.summary["flags"])
    root.attrs["complete"] = False
    r = tnfast("evaluate", "--preds", tmp_path / "preds.zarr", "--data", d / "tiny", cwd=d)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "incomplete" in errors[0] and r.stderr.strip().splitlines()[-1] == errors[0]


def test_report_training_curves_and_refuses_foreign_dirs(cli, tmp_path):
    d, _ = cli
    ev = evaluate(run=d / "run")
    run_copy = tmp_path / "run"
    run_copy.mkdir()
    # two members of an ensemble, three evaluations each, as train writes them
    recs = [{"member": m, "step": 5 * (i + 1), "epoch": i, "train_loss": 1 / (i + 1), "recon_loss": 0.0,
             "valid_loss": 1.1 / (i + 1), "valid": {t: {"n": 9, "pcc": 0.5, "pearson_delta": i / 10 + m,
                                                       "pcc_over_mean": 0.001 * i} for t in ("RNAi", "CRISPR", "OE")}}
            for m in (0, 1) for i in range(3)]
    (run_copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")
    assert read_metrics_jsonl(run_copy / "metrics.jsonl") == recs
    drawn = plot_training_curves(recs, tmp_path / "curves.png")
    assert drawn == {"losses": ["train_loss", "valid_loss", "recon_loss"],
                     "valid PearsonΔ": [f"valid.{t}.pearson_delta" for t in ("RNAi", "CRISPR", "OE")],
                     "valid PCC − the training mean's": [f"valid.{t}.pcc_over_mean" for t in ("RNAi", "CRISPR", "OE")]}
    assert plot_training_curves([{"step": 1, "loss": 0.5}], tmp_path / "none.png") == {}
    assert not (tmp_path / "none.png").exists()
    ev.run_dir = run_copy
    (tmp_path / "rep").mkdir()  # an earlier report is replaced
    (tmp_path / "rep" / "index.html").write_text("old")
    (tmp_path / "rep" / "stale.png").write_text("old")
    out, notes = write_report(ev, tmp_path / "rep")
    assert (out / "training_curves.png").is_file() and "training_curves.png" in (out / "index.html").read_text()
    assert notes == [] and not (out / "stale.png").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an earlier report"):
        write_report(ev, tmp_path / "other")
    write_json({"x": float("nan")}, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None}


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "train"}, "expected one of valid, test"),
    ({"truth": ["{nomatch}"]}, "names a gene of the bundle"),
    ({"preds": "{missing}"}, "not a Zarr store"),
    ({"run": "{nowhere}"}, "not a complete tnfast run directory"),
    ({"split": "valid", "truth": ["{nomatch}"]}, "not both"),
])
def test_bad_input_is_an_input_error(cli, tmp_path, kwargs, message):
    # (the CLI turns an InputError into one line and exit 2: test_preds_store_mean_model_is_flagged)
    d, _ = cli
    bundle = load_bundle(d / "tiny", truth=False)
    n = 3
    gct = GCT(np.zeros((len(bundle.landmarks), n), np.float32), bundle.landmarks,
              np.array([f"c{i}" for i in range(n)]),
              col_meta={"pert_type": np.array(["trt_xpr"] * n), "pert_gene_id": np.array([990001, 990002, 990003])})
    write_gctx(tmp_path / "nomatch.gctx", gct)
    fill = {"nomatch": tmp_path / "nomatch.gctx", "missing": tmp_path / "none.zarr", "nowhere": tmp_path}

    def expand(v):
        return [expand(x) for x in v] if isinstance(v, list) else v.format(**fill) if isinstance(v, str) else v

    kwargs = {"run": d / "run", **{k: expand(v) for k, v in kwargs.items()}}
    with pytest.raises(InputError, match=message):
        evaluate(**kwargs)


def test_coannotation_auroc_hand_values():
    from tnfast.data.edges import EdgeList
    from tnfast.evaluate import coannotation_auroc

    sig = np.array([[1, 2, 3, 4], [1, 2, 4, 3], [4, 3, 2, 1], [4, 3, 1, 2.0]])
    # the layer annotates genes a, b, c, d (not e) and links a-b, c-d: the two most similar pairs
    layer = EdgeList(np.array(["b", "a", "d", "c", "x"]), np.array([1, 3]), np.array([0, 2]), np.ones(2, np.float32))
    got = coannotation_auroc(sig, np.array(["a", "b", "c", "d"]), layer)
    assert got == {"auroc": 1.0, "pairs": 6, "positives": 2, "genes": 4}
    flipped = EdgeList(layer.genes, np.array([1]), np.array([2]), np.ones(1, np.float32))  # b-c: PCC -0.8
    # PCC b-c = -0.8: above a-c and b-d (-1), tied with a-d (-0.8), below a-b and c-d (0.8)
    assert coannotation_auroc(sig, np.array(["a", "b", "c", "d"]), flipped)["auroc"] == pytest.approx(2.5 / 5)
    assert np.isnan(coannotation_auroc(sig[:2], np.array(["a", "e"]), layer)["auroc"])


def test_coannotation_check_through_the_cli(cli, tmp_path):
    """`tnfast evaluate --orgdb`: a tiny org.Hs.eg.sqlite whose KEGG pathways group the bundle's genes."""
    import sqlite3

    from tnfast.data.bundle import load_bundle
    from tnfast.evaluate import coannotation

    d, _ = cli
    b = load_bundle(d / "tiny")
    db = tmp_path / "org.Hs.eg.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE)")
    con.execute("CREATE TABLE kegg (_id INTEGER NOT NULL, path_id CHAR(5) NOT NULL)")
    con.execute("CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL)")
    genes = b.genes[:120].tolist()
    con.executemany("INSERT INTO genes VALUES (?, ?)", list(enumerate(genes, 1)))
    con.executemany("INSERT INTO kegg VALUES (?, ?)", [(i, f"{i % 6:05d}") for i in range(1, 121)])
    con.executemany("INSERT INTO go_bp VALUES (?, ?, 'IDA')", [(i, f"GO:{i % 9}") for i in range(1, 121)])
    con.commit()
    con.close()
    co = coannotation(d / "run", db)
    assert set(co) == {"RNAi", "CRISPR", "OE"}
    for t, layers in co.items():
        s = b.signatures[t]
        measured_here = int(np.isin(s.gene, np.arange(120)).sum())
        for layer in ("go-bp", "kegg"):
            r = layers[layer]
            assert r["measured"]["genes"] == r["predicted"]["genes"] == measured_here
            assert r["unmeasured"]["genes"] > 0
            for k in ("measured", "predicted", "unmeasured"):
                assert 0 <= r[k]["auroc"] <= 1
    r = tnfast("evaluate", "--run", d / "run", "--orgdb", db, "--json", tmp_path / "e.json", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "co-annotation AUROC" in r.stdout
    assert set(json.loads((tmp_path / "e.json").read_text())["coannotation"]) == {"RNAi", "CRISPR", "OE"}
