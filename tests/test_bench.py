"""`tnfast bench` end to end at --scale tiny on CPU: the harness, not the speed.

Checks the JSON report's schema, that every peer ratio is present where both sides ran, that
every timed provider first agreed with the reference, and that a provider that disagrees is
reported and not timed.
"""

import json

import pytest
import torch
from conftest import tnfast

from tnfast.benchmarks import bench_attention, bench_integrate, suite
from tnfast.benchmarks.harness import bench_config
from tnfast.kernels import attention_naive


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    r = tnfast("bench", "all", "--scale", "tiny", "--device", "cpu", "--json", f"{tmp}/", cwd=tmp, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    files = list(tmp.glob("cpu-*core-*.json"))
    assert len(files) == 1, list(tmp.iterdir())
    return json.loads(files[0].read_text())


def rows(report, name, **match):
    return [r for r in report["benchmarks"][name]["results"] if all(r.get(k) == v for k, v in match.items())]


def test_report_header(report):
    assert report["format"] == "tnfast-bench" and report["device_type"] == "cpu"
    assert report["versions"]["torch"] == torch.__version__
    assert set(report["benchmarks"]) == set(suite.BENCHMARKS)
    assert report["date"][:4].isdigit() and "git_commit" in report
    for name, b in report["benchmarks"].items():
        assert b["benchmark"] == name and b["scale"] == "tiny" and b["results"], name


def test_every_row_ran_or_says_why(report):
    for name, b in report["benchmarks"].items():
        for r in b["results"]:
            if r["status"] == "ok":
                assert r["median_ms"] > 0, (name, r)
                assert r["max_rel_rms"] is not None and r["max_rel_rms"] < 1e-3, (name, r)
            else:
                assert r["status"].startswith("skipped:") and r["median_ms"] is None, (name, r)


def test_ratios_against_the_peers(report):
    for mode in ("fwd", "fwd_bwd"):
        (ref,) = rows(report, "gat", provider="tnfast_reference", mode=mode)
        (pyg,) = rows(report, "gat", provider="pyg", mode=mode)
        assert ref["speedup_vs_pyg"] == pytest.approx(pyg["median_ms"] / ref["median_ms"])
        assert ref["memory_ratio_vs_pyg"] is not None
    for r in rows(report, "attention", provider="torch_sdpa"):
        (mm,) = rows(report, "attention", provider="matmul", mode=r["mode"], L=r["L"], D=r["D"], H=r["H"])
        assert r["speedup_vs_matmul"] == pytest.approx(mm["median_ms"] / r["median_ms"])
    (ours,) = rows(report, "train", provider="tnfast", phase="gensan")
    (paper,) = rows(report, "train", provider="paper", phase="gensan")
    assert ours["speedup_vs_paper"] == pytest.approx(paper["epoch_s"] / ours["epoch_s"])
    assert ours["epoch_s"] == pytest.approx(ours["median_ms"] * ours["steps_per_epoch"] / 1e3)
    assert paper["batch"] == 32 and paper["steps_per_epoch"] == -(-paper["samples"] // 32)
    (enc,) = rows(report, "train", provider="tnfast", phase="encoder")
    assert enc["steps_per_epoch"] == 1 and enc["status"] == "ok"


def test_infer_rows(report):
    (cmd,) = rows(report, "infer", provider="command")
    assert cmd["status"] == "ok" and cmd["genes"] == 300
    assert cmd["genes_per_s"] == pytest.approx(300 / (cmd["median_ms"] / 1e3))
    assert cmd["peak_rss_mib"] > 0


def test_a_wrong_provider_is_reported_not_timed(monkeypatch):
    wrong = lambda q, k, v: attention_naive(q, k, v) * 1.01  # noqa: E731 - 1 % off
    real = bench_attention._provider_fn
    monkeypatch.setattr(bench_attention, "_provider_fn", lambda name: wrong if name == "matmul" else real(name))
    rep = bench_attention.run_benchmark("tiny", "cpu", modes=("fwd",), log=lambda line: None)
    bad = [r for r in rep["results"] if r["provider"] == "matmul"]
    assert bad and all(r["status"].startswith("check failed") and r["median_ms"] is None for r in bad)
    assert all(r["speedup_vs_matmul"] is None for r in rep["results"])
    assert suite.failures({"benchmarks": {"attention": rep}})


@pytest.mark.parametrize("args, msg", [(["nope"], "expected one of gat"), (["gat", "--scale", "huge"], "--scale"),
                                       (["gat", "--device", "tpu"], "--device")])
def test_bad_arguments(tmp_path, args, msg):
    r = tnfast("bench", *args, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_integrate_report(tmp_path):
    # --json names a directory that does not exist yet: the report goes inside it
    r = tnfast("bench", "integrate", "--scale", "tiny", "--device", "cpu", "--json", f"{tmp_path}/out",
               cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = (tmp_path / "out").glob("cpu-*core-*.json")
    (row,) = json.loads(path.read_text())["benchmarks"]["integrate"]["results"]
    assert row["status"] == "ok" and row["finite"] and len(row["steps"]) == 3 == row["end"]["step"]
    assert (row["heads"], row["gat_layers"]) == (2, 2) and row["median_ms"] > 0 and row["peak_mib"] > 0
    times = [s["elapsed_s"] for s in row["steps"]]
    assert times == sorted(times) and times[-1] == row["train_s"]
    for snap in (row["start"], row["end"]):
        assert len(snap["edge_auroc"]) == 7 and all(0 <= v <= 1 for v in snap["edge_auroc"].values())
        assert set(snap["ridge_pearson_delta"]) == {"RNAi", "CRISPR", "OE"}
    assert set(row["baseline_ridge_pearson_delta"]) == {"RNAi", "CRISPR", "OE"}


@pytest.fixture(scope="module")
def tiny_graph():
    import numpy as np

    from tnfast.data.synth import synthesize
    from tnfast.model.graph import MultiplexGraph

    bundle = synthesize("tiny")
    cfg = bench_config("tiny", False, profile="full")
    return bundle, MultiplexGraph.for_model(bundle, cfg.model, 0), np


def test_edge_auroc_against_oracle_embeddings(tiny_graph):
    """An embedding whose dot products are one layer's adjacency (plus a constant) ranks that
    layer's edges above its random pairs (but the few that are edges); a random one is at chance."""
    import scipy.sparse as sp

    bundle, graph, np = tiny_graph
    n = bundle.n_genes
    for name, c in bundle.networks.items():
        a = sp.csr_matrix((np.ones(len(c.indices)), c.indices, c.indptr), shape=(n, n)).toarray()
        w, v = np.linalg.eigh(a)
        exact = v * np.sqrt(w - w.min() + 1e-6)  # exact @ exact.T == a + c I
        density = len(c.indices) / np.count_nonzero(np.diff(c.indptr)) ** 2
        assert bench_integrate.edge_auroc(exact, graph)[name] > 0.98 - density, name
    chance = bench_integrate.edge_auroc(np.random.default_rng(0).normal(size=(n, 64)), graph)
    assert set(chance) == set(graph.layer_names) and all(abs(x - 0.5) < 0.1 for x in chance.values())


def test_ridge_pearson_delta_against_oracle_inputs(tiny_graph):
    """Ridge from the noise-free truth reaches near the oracle; from noise, nothing."""
    bundle, _, np = tiny_graph
    truth = np.concatenate([bundle.truth[t] for t in ("RNAi", "CRISPR", "OE")], axis=1)
    good = bench_integrate.ridge_pearson_delta(truth, bundle)
    noise = bench_integrate.ridge_pearson_delta(np.random.default_rng(0).normal(size=(bundle.n_genes, 8)), bundle)
    assert set(good) == set(noise) == {"RNAi", "CRISPR", "OE"}
    assert min(good.values()) > 0.5 and max(abs(x) for x in noise.values()) < 0.15
