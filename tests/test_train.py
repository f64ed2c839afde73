"""`tnfast train` with TranscriptionNet: run directory, metrics, checkpoints, resume after a kill,
configuration, torchrun/DDP, and the trained run through infer and evaluate."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tnfast

from tnfast.data.bundle import load_bundle
from tnfast.data.synth import synthesize
from tnfast.errors import InputError
from tnfast.metrics import pearson_delta, row_pearson
from tnfast.predict import ALL_SPLITS, load_predictor
from tnfast.runs import member_weights, read_run
from tnfast.train import learning_rate, train
from tnfast.train_config import TRAIN_PROFILES, auto_profile, resolve

TINY = Path(__file__).parent / "data" / "tiny_model.toml"


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)


def _records(run_dir: Path) -> list[dict]:
    # wall-clock time is the one field that may differ between two runs of the same config
    return [{k: v for k, v in json.loads(ln).items() if k != "elapsed_s"}
            for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train")
    synthesize("tiny", seed=2).save(d / "tiny")
    return d / "tiny"


@pytest.fixture(scope="module")
def cli_run(tiny):
    """A run trained through the real command line."""
    d = tiny.parent
    r = tnfast("train", "--data", tiny, "--out", d / "run", "--config", TINY, "--set", "train.steps=8", cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "run", r


def test_run_directory_contents(cli_run, tiny):
    run_dir, r = cli_run
    assert "TranscriptionNet" in r.stdout and "training mean" in r.stdout and "oracle" in r.stdout
    assert "model PCC − mean's PCC" in r.stdout and re.search(r"\d\.\d{3} ± \d\.\d{3} +│ [+-]\d\.\d{4} ± \d\.\d{4}", r.stdout)
    assert {p.name for p in run_dir.iterdir()} == {"config.toml", "train.json", "metrics.jsonl", "model.pt", "run.json",
                                                   "embedding.npy"}
    run = read_run(run_dir)
    # the network embedding the model read: every layer's leading eigenvectors x sqrt(dim)
    from tnfast.embed import multiplex_embedding

    dim = run["config"]["model"]["structural_dim"]
    want = multiplex_embedding(load_bundle(tiny).networks, dim, run["config"]["train"]["seed"]) * np.float32(np.sqrt(dim))
    np.testing.assert_array_equal(np.load(run_dir / "embedding.npy"), want)
    assert run["model"] == "transcriptionnet" and run["types"] == ["RNAi", "CRISPR", "OE"]
    assert run["config"]["train"]["steps"] == 8 and run["config"]["model"]["embedding_dim"] == 16
    # the saved config.toml is the resolved config and reads back as --config
    assert resolve(config=run_dir / "config.toml").to_dict() == run["config"]
    state = _state(run_dir)  # weights_only: tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and "scaler.mean" in state
    recs = _records(run_dir)
    assert [r["step"] for r in recs] == list(range(2, 2 + 2 * len(recs), 2))
    assert recs[0]["phase"] == "pretrain" and "valid" not in recs[0]
    for rec in recs[1:]:
        assert set(rec["valid"]) == {"RNAi", "CRISPR", "OE"}
        for m in rec["valid"].values():
            assert set(m) == {"n", "pcc", "pearson_delta", "pearson_delta_se", "mse", "pcc_over_mean",
                              "pcc_over_mean_se", "loss"} and np.isfinite(m["pearson_delta"])
        assert rec["score"] == pytest.approx(np.mean([m["pearson_delta"] for m in rec["valid"].values()]))
    assert all(rec["member"] == 0 for rec in recs)  # one member
    (member,) = run["members"]
    assert member["seed"] == run["config"]["train"]["seed"] and member["steps"] == recs[-1]["step"]
    best = [rec for rec in recs if rec.get("best")]
    assert best and best[-1]["step"] == member["best_step"]
    # the summary is the best checkpoint's: its valid PearsonΔ is the best record's where the gate
    # fitted afterwards kept all of the network's correction (PearsonΔ is blind to the shrinkage,
    # which is never 0)
    for t, m in best[-1]["valid"].items():
        ti = ["RNAi", "CRISPR", "OE"].index(t)
        gate, shrink = member["gate"][t], member["shrink"][t]
        assert 0.1 <= shrink <= 1.0 and state["shrink"][ti] == pytest.approx(shrink)
        assert 0.0 <= gate <= 1.0 and state["gate"][ti] == pytest.approx(gate)
        choice = member["residual_correction"][t]
        assert choice["channels"] in ("none", "own type", "every type", "every channel")
        assert choice["held_out_mse"] <= choice["none_mse"]
        corrected = bool(state["residual.coef"][ti].any())
        assert corrected == (choice["channels"] != "none")
        sub = member["output_subspace"][t]
        rank = sub["rank"]
        assert rank in (0, 16, 32, 64, 128) and int(state["subspace.rank"][ti]) == rank
        assert sub["best_rank"] in (16, 32, 64, 128) and rank in (0, sub["best_rank"])
        assert rank == 0 or sub["valid_gain"] > 0  # a rank is taken only on a gain
        if gate == 1.0 and not corrected and rank == 0:
            assert run["metrics"][t]["valid"]["model"]["pearson_delta"] == pytest.approx(m["pearson_delta"], abs=1e-6)


def test_gate_and_shrinkage_minimise_valid_mse(tiny, tmp_path):
    """The fitted factors are the least-squares ones: the gate on what the network adds to the
    ridge prior (with no shrinkage, in [0, 1]), then the shrinkage of the gated deviation (in
    [MIN_SHRINK, 1]); any other factor in its range does worse on the valid split (in scaled
    units, where the fit is done). Without the residual correction and the output subspace,
    which sit between the two (tests/test_smoothing.py, tests/test_subspace.py)."""
    from tnfast.train import MIN_SHRINK, _Valid, build_model, fit_output_scales
    from tnfast.model import Measurements, split_samples

    b = load_bundle(tiny)
    cfg = resolve(config=TINY, sets=["model.residual_rank=0", "model.output_subspace=false"])
    model, graph = build_model(b, cfg, torch.device("cpu"))
    model.scaler.fit_bundle(b)
    meas = Measurements.from_bundle(b, ("train",), model.scaler)
    genes, types, values = split_samples(b, "train", ["RNAi", "CRISPR", "OE"])
    types = torch.from_numpy(types)
    model.fit_prior(graph, torch.from_numpy(genes), types, model.scaler.transform(torch.from_numpy(values), types))
    assert bool(model.prior.fitted.all())
    valid = _Valid.from_bundle(b, ["RNAi", "CRISPR", "OE"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an untrained model that adds sizeable gene-specific deviations to the prior
        for head in model.fundnn.mlps:
            head[-1].weight.normal_(0, 0.3, generator=gen)
            head[-1].bias.normal_(0, 0.3, generator=gen)
    fit_output_scales(model, graph, meas, valid, torch.device("cpu"), "fp32", (torch.from_numpy(genes), types, None))
    model.eval()
    emb = model.encode(graph)
    for t, (pos, truth, _) in valid.types.items():
        ti = ["RNAi", "CRISPR", "OE"].index(t)
        gate, lam = float(model.gate[ti]), float(model.shrink[ti])
        assert 0.0 <= gate <= 1.0 and MIN_SHRINK <= lam <= 1.0
        tt = torch.full((len(pos),), ti)
        y = model.scaler.transform(torch.from_numpy(truth), tt)

        def mse(buffer, factor):
            buffer[ti] = factor
            p = model.predict_genes(emb, valid.genes, meas, graph=graph)[torch.from_numpy(pos), ti]
            return float((model.scaler.transform(p, tt) - y).pow(2).mean())

        for buffer, best_factor, low in ((model.gate, gate, 0.0), (model.shrink, lam, MIN_SHRINK)):
            if buffer is model.gate:
                model.shrink[ti] = 1.0  # the gate is fitted before any shrinkage
            best = mse(buffer, best_factor)
            for other in (best_factor * 0.5, min(best_factor * 1.5, 1.0), low, 1.0):
                if other != best_factor and other >= low:
                    assert best <= mse(buffer, other) + 1e-9
            buffer[ti] = best_factor
            model.shrink[ti] = lam


def _assert_summary_scores(p, run: dict, split: str) -> None:
    """The predictor's PearsonΔ on ``split`` is what run.json's summary says, per type."""
    for t in p.types:
        s = p.bundle.signatures[t]
        rows = s.rows(split)
        mean = s.values[s.rows("train")].mean(axis=0)
        pred, truth = p.predict(t, s.gene[rows]), s.values[rows]
        model = run["metrics"][t][split]["model"]
        pd = pearson_delta(pred, truth, mean)
        assert pd.mean() == pytest.approx(model["pearson_delta"], abs=1e-5)
        assert pd.std(ddof=1) / np.sqrt(len(pd)) == pytest.approx(model["pearson_delta_se"], abs=1e-5)
        # the PCC's lead over the mean's, per signature (paired), by np.corrcoef
        d = np.array([np.corrcoef(a, y)[0, 1] - np.corrcoef(mean, y)[0, 1] for a, y in zip(pred, truth)])
        assert d.mean() == pytest.approx(model["pcc_over_mean"], abs=1e-5)
        assert d.std(ddof=1) / np.sqrt(len(d)) == pytest.approx(model["pcc_over_mean_se"], abs=1e-5)


def test_predictor_reproduces_the_run_summary(cli_run, tiny):
    """The model reloaded from disk (load_predictor) gives the numbers training reported."""
    run_dir, _ = cli_run
    run = read_run(run_dir)
    p = load_predictor(run_dir)
    b = p.bundle
    _assert_summary_scores(p, run, "test")
    # other-type measurements as inputs (infer's setting) change the predictions of measured genes only
    q = load_predictor(run_dir, b, inputs=ALL_SPLITS)
    test_genes = np.unique(np.concatenate([b.signatures[t].gene[b.signatures[t].rows("test")] for t in p.types]))
    unmeasured = np.setdiff1d(np.arange(b.n_genes), np.concatenate([s.gene for s in b.signatures.values()]))[:20]
    assert not np.allclose(p.predict_types(p.types, test_genes), q.predict_types(p.types, test_genes))
    np.testing.assert_array_equal(p.predict_types(p.types, unmeasured), q.predict_types(p.types, unmeasured))


def test_prediction_reads_the_saved_embedding(cli_run, tiny, tmp_path, monkeypatch):
    """Inference never recomputes the embedding (its basis may differ on another machine): it
    reads the run's; a run without it, or saved by a tnfast whose inputs differed, is one line."""
    import shutil

    import tnfast.data.bundle as bundle_mod

    run_dir, _ = cli_run
    genes = np.arange(40)
    want = load_predictor(run_dir).predict_types(["RNAi", "OE"], genes)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)

    def refuse(*args, **kwargs):
        raise AssertionError("the embedding was recomputed")

    monkeypatch.setattr(bundle_mod, "structural_inputs", refuse)
    np.testing.assert_array_equal(load_predictor(copy).predict_types(["RNAi", "OE"], genes), want)
    # another embedding of the same shape: other predictions, so it is what the model reads
    e = np.load(copy / "embedding.npy")
    np.save(copy / "embedding.npy", e[::-1].copy())
    assert not np.allclose(load_predictor(copy).predict_types(["RNAi", "OE"], genes), want)
    np.save(copy / "embedding.npy", e[:, :-1].copy())
    with pytest.raises(InputError, match="embedding.npy.*float32 array of shape"):
        load_predictor(copy)
    (copy / "embedding.npy").unlink()
    r = tnfast("infer", "--run", copy, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    assert r.returncode == 2 and "embedding.npy" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.zarr").exists()
    np.save(copy / "embedding.npy", e)
    run = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**run, "version": 1}))
    r = tnfast("infer", "--run", copy, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    assert r.returncode == 2 and "saved by an older tnfast" in r.stderr and "train the run again" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "p.zarr").exists()


def test_infer_and_evaluate_a_transcriptionnet_run(cli_run, tiny):
    import xarray as xr

    run_dir, _ = cli_run
    d = tiny.parent
    r = tnfast("infer", "--run", run_dir, "--out", d / "preds.zarr", "--chunk", "64", cwd=d)
    assert r.returncode == 0, r.stderr
    ds = xr.open_zarr(d / "preds.zarr")
    p = load_predictor(run_dir, inputs=ALL_SPLITS)
    genes = np.arange(p.bundle.n_genes)
    np.testing.assert_allclose(ds["predictions"].values, p.predict_types(["RNAi", "CRISPR", "OE"], genes),
                               rtol=1e-5, atol=1e-6)
    r = tnfast("evaluate", "--run", run_dir, "--json", d / "eval.json", cwd=d)
    assert r.returncode == 0, r.stderr
    doc = json.loads((d / "eval.json").read_text())
    run = read_run(run_dir)
    for t in ("RNAi", "CRISPR", "OE"):
        got = doc["types"][t]["model"]["pearson_delta"]
        assert got == pytest.approx(run["metrics"][t]["test"]["model"]["pearson_delta"], abs=1e-5)


def _kill_and_resume(args: list, out: Path, wait_for: str) -> dict:
    """Start `tnfast train ARGS --out OUT`, SIGKILL it once OUT/WAIT_FOR exists, resume it with
    --resume; the checkpoint it was resumed from."""
    env = {**os.environ, "TNFAST_RUNS": str(out.parent / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "tnfast", "train", *map(str, args), "--out", out],
                            cwd=out.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / wait_for).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists(), "killed too late to test resuming"
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    r = tnfast("train", "--resume", "--out", out, cwd=out.parent)
    assert r.returncode == 0, r.stderr
    return ck


def test_resume_after_sigkill_gives_the_same_model(tiny, tmp_path):
    """A real `tnfast train` killed with SIGKILL after its first checkpoint, resumed with --resume,
    ends bit-identical to an uninterrupted run of the same config."""
    args = ["--data", tiny, "--config", TINY, "--set", "train.patience=100", "--set", "train.lr_final=0.1"]
    r = tnfast("train", *args, "--out", tmp_path / "whole", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _kill_and_resume(args, tmp_path / "cut", "checkpoint.pt")
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _records(tmp_path / "whole") == _records(tmp_path / "cut")
    assert read_run(tmp_path / "whole")["metrics"] == read_run(tmp_path / "cut")["metrics"]
    # nothing left to resume
    r = tnfast("train", "--resume", "--out", tmp_path / "cut", cwd=tmp_path)
    assert r.returncode == 2 and "complete run" in r.stderr


def test_same_seed_same_model_other_seed_differs(tiny, tmp_path):
    cfg = resolve(config=TINY, sets=["train.steps=2", "train.pretrain_steps=1"])
    train(tiny, tmp_path / "a", cfg)
    train(tiny, tmp_path / "b", cfg)
    train(tiny, tmp_path / "c", resolve(config=TINY, sets=["train.steps=2", "train.pretrain_steps=1"], seed=1))
    a, b, c = (_state(tmp_path / x) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ddp_two_gloo_processes_match_one(tiny, tmp_path):
    """torchrun with 2 CPU processes (gloo, DDP: each takes half of every batch) trains the same
    model as 1 process, up to float summation order."""
    sets = ["--set", "train.steps=4", "--set", "train.patience=100"]
    r = tnfast("train", "--data", tiny, "--config", TINY, *sets, "--out", tmp_path / "one", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "TNFAST_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "tnfast", "train", "--data", str(tiny), "--config", str(TINY), *sets, "--out", str(tmp_path / "two")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _state(tmp_path / "one"), _state(tmp_path / "two")
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "embedding.npy"), np.load(tmp_path / "two" / "embedding.npy"))
    # per tensor, relative RMS: AdamW moves a weight whose gradient is rounding noise by ~lr a step
    # whichever sign the noise takes, so single entries may differ by more than the tensor does
    for k in a.keys() - {"residual.coef", "residual.basis"}:
        x, y = a[k].double(), b[k].double()
        assert (x - y).norm() <= 1e-3 * y.norm() + 1e-12, k
    # the residual correction: its factors come from an SVD, compared as the product they form
    # (scaled units; entries of order 10, so the rounding of the SVD inputs shows at 1e-4)
    ca, cb = (torch.einsum("tnk,kl->ntl", s["residual.coef"], s["residual.basis"]) for s in (a, b))
    torch.testing.assert_close(ca, cb, rtol=1e-3, atol=1e-3 * float(ca.abs().max()))
    assert [m["best_step"] for m in read_run(tmp_path / "two")["members"]] == \
        [m["best_step"] for m in read_run(tmp_path / "one")["members"]]


# ------------------------------------------------------------------------------------------
# ensembles: members trained as the runs of their seeds, predictions their mean
# ------------------------------------------------------------------------------------------
# without the network embedding (its basis is drawn from the run's seed, shared by the members),
# member k is exactly the one-member run with seed + k: the oracle below
ENSEMBLE = ["--set", "model.structural_dim=0", "--set", "train.patience=100"]


def _weights(run_dir: Path, k: int) -> dict:
    return torch.load(member_weights(run_dir, k), weights_only=True)


@pytest.fixture(scope="module")
def seed_runs(tiny):
    """One-member runs with seeds 4 and 5 and a 2-member ensemble with seed 4, by the command line."""
    d = tiny.parent / "ensemble"
    for name, extra in (("s4", ["--seed", "4"]), ("s5", ["--seed", "5"]),
                        ("ens", ["--seed", "4", "--set", "train.ensemble=2"])):
        r = tnfast("train", "--data", tiny, "--config", TINY, *ENSEMBLE, *extra, "--out", d / name, cwd=tiny.parent)
        assert r.returncode == 0, r.stderr
    return d


def test_ensemble_members_are_the_runs_of_their_seeds(seed_runs):
    d = seed_runs
    assert {"model.pt", "model.1.pt"} <= {p.name for p in (d / "ens").iterdir()}
    assert not (d / "ens" / "model.2.pt").exists() and not (d / "ens" / "checkpoint.pt").exists()
    for k, single in enumerate(("s4", "s5")):
        a, b = _weights(d / "ens", k), _weights(d / single, 0)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), single
    ens, s4, s5 = (read_run(d / x) for x in ("ens", "s4", "s5"))
    assert ens["version"] == 3 and ens["members"] == s4["members"] + s5["members"]
    assert [m["seed"] for m in ens["members"]] == [4, 5]
    # metrics.jsonl: member 0's records, then member 1's, each those of its seed's run
    recs = _records(d / "ens")
    assert [r for r in recs if r["member"] == 0] == _records(d / "s4")
    assert [{**r, "member": 0} for r in recs if r["member"] == 1] == _records(d / "s5")
    assert [r["member"] for r in recs] == sorted(r["member"] for r in recs)


def test_ensemble_predicts_the_mean_of_its_members(seed_runs):
    """Predictions (load_predictor, as infer and evaluate use it) are the members' mean, and the
    run's summary scores that mean."""
    d = seed_runs
    ens = load_predictor(d / "ens")
    b = ens.bundle
    genes = np.arange(b.n_genes)
    p4, p5 = (torch.from_numpy(load_predictor(d / x, b).predict_types(ens.types, genes)) for x in ("s4", "s5"))
    assert not torch.equal(p4, p5)
    torch.testing.assert_close(torch.from_numpy(ens.predict_types(ens.types, genes)), (p4 + p5) / 2,
                               rtol=1e-6, atol=1e-7)
    _assert_summary_scores(ens, read_run(d / "ens"), split="valid")


def test_ensemble_resumes_after_sigkill_in_its_second_member(seed_runs, tiny, tmp_path):
    """Killed while its second member trains (its first weights written), resumed: the same
    members, records and run.json as the run that was never interrupted."""
    args = ["--data", tiny, "--config", TINY, *ENSEMBLE, "--seed", "4", "--set", "train.ensemble=2"]
    ck = _kill_and_resume(args, tmp_path / "cut", "model.1.pt")
    assert ck["member"] == 1
    whole = seed_runs / "ens"
    for k in (0, 1):
        a, b = _weights(whole, k), _weights(tmp_path / "cut", k)
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert _records(whole) == _records(tmp_path / "cut")
    a, b = read_run(whole), read_run(tmp_path / "cut")
    assert a["members"] == b["members"] and a["metrics"] == b["metrics"]


@pytest.fixture(scope="module")
def folds_runs(tiny):
    """A 2-member ensemble whose members validate on folds of their own (seed 4), and, as its
    oracle, the one-member runs (seeds 4 and 5) on bundles saved with each member's split."""
    from dataclasses import replace

    from tnfast.train import member_bundle

    d = tiny.parent / "folds"
    args = ["--config", TINY, *ENSEMBLE, "--set", "train.ensemble=2"]
    r = tnfast("train", "--data", tiny, *args, "--set", "train.member_valid=folds", "--seed", "4", "--out", d / "ens",
               cwd=tiny.parent)
    assert r.returncode == 0, r.stderr
    assert "out_of_fold" in r.stdout
    cfg = resolve(config=d / "ens" / "config.toml")
    for k in (0, 1):
        member_bundle(load_bundle(tiny), cfg, k).save(d / f"b{k}")
        r = tnfast("train", "--data", d / f"b{k}", "--config", TINY, *ENSEMBLE, "--seed", str(4 + k), "--out",
                   d / f"s{k}", cwd=tiny.parent)
        assert r.returncode == 0, r.stderr
    return d, replace(cfg, train=replace(cfg.train, seed=4))


def test_folds_partition_the_measured_genes(folds_runs, tiny):
    """Each gene with a train or valid signature is valid for exactly one member, in every type;
    test signatures stay test; the folds are as even as they can be."""
    from tnfast.train import gene_folds, member_bundle

    _, cfg = folds_runs
    b = load_bundle(tiny)
    fold = gene_folds(b, 2, cfg.train.seed)
    measured = np.unique(np.concatenate([s.gene[s.split != "test"] for s in b.signatures.values()]))
    assert set(np.flatnonzero(fold >= 0)) == set(measured) and abs(int((fold == 0).sum()) - int((fold == 1).sum())) <= 1
    splits = [member_bundle(b, cfg, k).signatures for k in (0, 1)]
    for t, s in b.signatures.items():
        a, c = splits[0][t].split, splits[1][t].split
        assert ((a == "test") == (s.split == "test")).all() and ((c == "test") == (s.split == "test")).all()
        kept = s.split != "test"
        assert (((a == "valid") ^ (c == "valid")) == kept).all()  # valid in one member, trained in the other
        np.testing.assert_array_equal(a[kept] == "valid", fold[s.gene[kept]] == 0)


def test_folds_members_are_one_member_runs_on_their_folds(folds_runs, tiny):
    """Member k is bit for bit the one-member run of seed 4 + k on the bundle re-split for it;
    run.json's out-of-fold scores are those runs' own valid scores pooled; test genes are
    predicted by the members' mean with the train and valid signatures as inputs."""
    d, _ = folds_runs
    for k in (0, 1):
        a, b = _weights(d / "ens", k), _weights(d / f"s{k}", 0)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), k
    ens, singles = read_run(d / "ens"), [read_run(d / f"s{k}") for k in (0, 1)]
    for t in ens["types"]:
        got = ens["metrics"][t]
        assert "valid" not in got and set(got) == {"out_of_fold", "test"}
        parts = [s["metrics"][t]["valid"] for s in singles]
        for who in ("model", "mean", "oracle"):
            n = sum(p[who]["n"] for p in parts)
            assert got["out_of_fold"][who]["n"] == n
            for key in ("pcc", "pearson_delta", "mse", "pcc_over_mean"):
                want = sum(p[who]["n"] * p[who][key] for p in parts) / n
                assert got["out_of_fold"][who][key] == pytest.approx(want, abs=1e-6), (t, who, key)
            for key in ("pearson_delta_se", "pcc_over_mean_se"):  # the s.e. of a mean over disjoint sets
                want = np.sqrt(sum((p[who]["n"] * p[who][key]) ** 2 for p in parts)) / n
                assert got["out_of_fold"][who][key] == pytest.approx(want, abs=1e-6), (t, who, key)
    p = load_predictor(d / "ens")
    b = p.bundle
    genes = np.arange(b.n_genes)
    # each single run with its own (re-split) bundle: train and valid are the same signatures as b's
    members = [torch.from_numpy(load_predictor(d / f"s{k}", inputs=("train", "valid")).predict_types(p.types, genes))
               for k in (0, 1)]
    torch.testing.assert_close(torch.from_numpy(p.predict_types(p.types, genes)), (members[0] + members[1]) / 2,
                               rtol=1e-6, atol=1e-7)
    for t in p.types:  # the summary's test scores: that mean, around the train and valid rows' mean
        s = b.signatures[t]
        rows = s.rows("test")
        mean = s.values[s.split != "test"].astype(np.float64).mean(axis=0)
        got = pearson_delta(p.predict(t, s.gene[rows]), s.values[rows], mean).mean()
        assert got == pytest.approx(ens["metrics"][t]["test"]["model"]["pearson_delta"], abs=1e-5)


def test_folds_ensemble_resumes_after_sigkill(folds_runs, tiny, tmp_path):
    """Killed while its second member trains, resumed: the member re-splits its bundle the same
    way and ends as the uninterrupted run did."""
    d, _ = folds_runs
    args = ["--data", tiny, "--config", TINY, *ENSEMBLE, "--set", "train.ensemble=2", "--set",
            "train.member_valid=folds", "--seed", "4"]
    assert _kill_and_resume(args, tmp_path / "cut", "model.1.pt")["member"] == 1
    for k in (0, 1):
        a, b = _weights(d / "ens", k), _weights(tmp_path / "cut", k)
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert read_run(d / "ens")["metrics"] == read_run(tmp_path / "cut")["metrics"]


def test_evaluate_a_folds_run_fits_the_baselines_on_train_and_valid(folds_runs, tiny, tmp_path):
    """The baselines learn from what the model learnt from: ridge's penalty chosen on valid, then
    refitted on train and valid; the mean is that of train and valid. Its valid split is refused."""
    from tnfast.design import DesignConfig, design_matrix
    from tnfast.ridge import fit_ridge

    d, _ = folds_runs
    r = tnfast("evaluate", "--run", d / "ens", "--split", "valid", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "member_valid" in r.stderr, r.stderr
    r = tnfast("evaluate", "--run", d / "ens", "--json", tmp_path / "e.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ev = json.loads((tmp_path / "e.json").read_text())
    assert "ridge_residual" not in ev["types"]["RNAi"] and any("member_valid" in n for n in ev["notes"])
    b = load_bundle(tiny)
    x = design_matrix(b, DesignConfig.from_run(read_run(d / "ens")))
    for t, s in b.signatures.items():
        tr, va, te = (s.split == k for k in ("train", "valid", "test"))
        alpha = fit_ridge(x[s.gene[tr]], s.values[tr], x[s.gene[va]], s.values[va]).alpha
        ridge = fit_ridge(x[s.gene[tr | va]], s.values[tr | va], alphas=(alpha,))
        mean = s.values[tr | va].astype(np.float64).mean(axis=0)
        got = ev["types"][t]
        assert got["ridge"]["alpha"] == alpha
        assert got["ridge"]["pearson_delta"] == pytest.approx(
            pearson_delta(ridge.predict(x[s.gene[te]]), s.values[te], mean).mean(), abs=1e-5)
        assert got["mean"]["pcc"] == pytest.approx(
            row_pearson(np.broadcast_to(mean, s.values[te].shape), s.values[te]).mean(), abs=1e-5)


def test_predictor_takes_integer_gene_indices_only(cli_run):
    p = load_predictor(cli_run[0])
    with pytest.raises(TypeError, match="integers"):
        p.predict_types(["RNAi"], np.array([0.7]))  # not gene 0
    np.testing.assert_array_equal(p.predict_types(["RNAi"], np.array([0], np.int32)),
                                  p.predict_types(["RNAi"], [0]))
    assert p.predict_types(["RNAi"], []).shape[:2] == (1, 0)


def test_a_version_2_run_reads_as_one_member(cli_run, tmp_path):
    """Runs saved before ensembles (format 2: no "members", the top-level fields of the one model)
    still load, with the same predictions."""
    import shutil

    run_dir, _ = cli_run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    run = json.loads((old / "run.json").read_text())
    (member,) = run.pop("members")
    cfg = run["config"]["train"]
    del cfg["ensemble"]
    (old / "run.json").write_text(json.dumps({**run, **member, "version": 2}))
    genes = np.arange(20)
    np.testing.assert_array_equal(load_predictor(old).predict_types(["RNAi"], genes),
                                  load_predictor(run_dir).predict_types(["RNAi"], genes))


def test_a_run_saved_before_the_output_subspace_projects_nothing(cli_run, tmp_path):
    """model.pt without the subspace buffers (and a config without the option) loads, and
    predicts as the same weights with every rank set to 0."""
    import shutil

    run_dir, _ = cli_run
    old, zeroed = tmp_path / "old", tmp_path / "zeroed"
    for d in (old, zeroed):
        shutil.copytree(run_dir, d)
    state = _state(run_dir)
    state["subspace.rank"] = torch.tensor([16, 32, 64])  # a projection the old run must not make
    torch.save({**state, "subspace.rank": torch.zeros(3, dtype=torch.long)}, zeroed / "model.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("subspace.")}, old / "model.pt")
    run = json.loads((old / "run.json").read_text())
    del run["config"]["model"]["output_subspace"]
    (old / "run.json").write_text(json.dumps(run))
    genes = np.arange(20)
    want = load_predictor(zeroed).predict_types(["RNAi", "OE"], genes)
    np.testing.assert_array_equal(load_predictor(old).predict_types(["RNAi", "OE"], genes), want)
    torch.save(state, zeroed / "model.pt")  # the check can fail: these ranks change predictions
    assert not np.allclose(load_predictor(zeroed).predict_types(["RNAi", "OE"], genes), want)


@pytest.mark.parametrize("args, where, what", [
    (["--config", "{tmp}/bad.toml"], "bad.toml", "unknown [model] keys"),
    (["--config", "{tmp}/broken.toml"], "broken.toml", "invalid TOML"),
    (["--config", "{tmp}/nothere.toml"], "nothere.toml", "no such file"),
    (["--set", "model.gat_heads=0"], "--set", "gat_heads must be an integer >= 1"),
    (["--set", "train.nope=1"], "--set", "unknown [train] keys"),
    (["--set", "train.lr_final=2"], "--set", "lr_final must be a number in [0, 1]"),
    (["--set", "train.lr=nan"], "--set", "lr must be a finite number >= 0"),
    (["--set", "train.ensemble=0"], "--set", "ensemble must be an integer >= 1"),
    (["--set", "model.output_subspace=3"], "--set", "output_subspace must be true or false"),
    (["--set", "model.use_features=\"no\""], "--set", "use_features must be true or false"),
    (["--set", "model.beta=true"], "--set", "beta must be a finite number"),
    (["--set", "train.drop_available=true"], "--set", "drop_available must be in [0, 1]"),
    (["--profile", "quick", "--set", "train.member_valid=folds"], "--set", "needs ensemble >= 2"),
    (["--set", "train.ensemble=1"], "--set", "needs ensemble >= 2"),  # the tiny bundle's small profile: folds
    (["--set", "train.member_valid=bags"], "--set", "member_valid must be one of split, folds"),
    (["--set", "gat_heads=2"], "--set", "expected model.KEY=VALUE"),
    (["--profile", "huge"], "--profile", "unknown profile"),
    (["--device", "cuda"], "--device", "no CUDA device"),
    (["--resume", "--set", "train.lr=1"], "--resume", "saved data and config"),
    (["--out", "{tmp}/taken"], "taken", "already exists"),
    (["--seed", "-1"], "--seed", "must be >= 0, got -1"),
    (["--set", "train.seed=-3"], "--set", "seed must be an integer >= 0, got -3"),
    (["--model", "ridge", "--seed", "-1"], "--seed", "must be >= 0"),
    (["--model", "ridge", "--out", "{tmp}/taken"], "taken", "already exists (choose another --out)"),
])
def test_bad_configuration_is_one_line(tiny, tmp_path, args, where, what):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "bad.toml").write_text("[model]\ngat_head = 3\n")
    (tmp_path / "broken.toml").write_text("[model\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    data = [] if "--resume" in args else ["--data", tiny]
    r = tnfast("train", *data, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.rstrip("\n").splitlines()  # no empty progress line before it either
    assert len(lines) == 1 and where in lines[0] and what in lines[0], r.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_set_is_refused_before_the_default_is_generated(tiny, tmp_path):
    """No --data means generating the full-scale default (a minute, half a GB): a typo in --set
    is refused before that, and the --config help names its sections."""
    r = tnfast("train", "--set", "train.stepz=3", cwd=tmp_path, env_extra={"TNFAST_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "unknown [train] keys stepz" in r.stderr, r.stderr
    assert not (tmp_path / "cache").exists()
    # with --data the bundle's own profile judges the values: folds are fine under small's ten
    # members (the quick profile's one would refuse them); --max-memory stops it right after
    r = tnfast("train", "--data", tiny, "--set", "train.member_valid=folds", "--max-memory", "1M", cwd=tmp_path)
    assert r.returncode == 2 and "--max-memory" in r.stderr and "--set" not in r.stderr, r.stderr
    r = tnfast("train", "--help", cwd=tmp_path, env_extra={"COLUMNS": "250"})
    assert "TOML file: profile, [model] and [train] values" in r.stdout


def test_learning_rate_schedule():
    tc = TRAIN_PROFILES["full"].__class__(lr=0.01, lr_final=0.1, steps=11)
    assert learning_rate(tc, -5) == 0.01  # pretraining: constant
    assert learning_rate(tc, 0) == pytest.approx(0.01)
    assert learning_rate(tc, 5) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert learning_rate(tc, 10) == pytest.approx(0.001)
    assert learning_rate(tc, 50) == pytest.approx(0.001)  # past the planned steps: stays at the end
    rates = [learning_rate(tc, i) for i in range(11)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert {learning_rate(tc.__class__(lr=0.01, steps=11), i) for i in range(11)} == {0.01}  # lr_final 1


def test_config_resolution_order(tmp_path):
    (tmp_path / "c.toml").write_text('profile = "quick"\n[model]\ngat_heads = 3\n[train]\nlr = 0.01\n')
    cfg = resolve(None, tmp_path / "c.toml", ["model.gat_heads=5", "train.batch_size=16"], seed=7)
    assert cfg.profile == "quick"
    assert (cfg.model.gat_heads, cfg.train.lr, cfg.train.batch_size, cfg.train.seed) == (5, 0.01, 16, 7)
    assert cfg.model.embedding_dim == 128  # untouched: the quick profile's value
    assert resolve("full").train == TRAIN_PROFILES["full"]
    with pytest.raises(InputError, match="disagrees"):
        resolve("full", tmp_path / "c.toml")


def test_auto_profile_follows_the_measured_signatures(tmp_path):
    def bundle(name: str, counts: dict[str, tuple[int, int]]) -> Path:
        d = tmp_path / name
        (d / "signatures").mkdir(parents=True)
        (d / "bundle.json").write_text(json.dumps({"types": list(counts)}))
        for t, (measured, test) in counts.items():
            np.savez(d / "signatures" / f"{t}.npz", split=np.array(["train", "valid"] * (measured // 2) + ["test"] * test))
        return d

    # the test split does not count: 998 measured + 5,000 test is still small data
    small = bundle("small", {"RNAi": (998, 5000), "OE": (200, 0)})
    assert auto_profile(small, "cpu") == ("small", "small data: RNAi 998 / OE 200 measured signatures, "
                                                   "under 1000 in every type")
    assert auto_profile(small, "cuda")[0] == "small"
    big = bundle("big", {"RNAi": (200, 0), "OE": (1000, 0)})  # one type with enough: the device's profile
    assert auto_profile(big, "cpu")[0] == "quick" and auto_profile(big, "cuda")[0] == "full"
    (big / "signatures" / "OE.npz").write_bytes(b"damaged")  # unreadable: the device's profile (load reports it)
    assert auto_profile(big, "cpu")[0] == "quick"
    cfg = resolve(None, None, [], None, auto_profile(small, "cpu")[0])
    assert (cfg.train.ensemble, cfg.train.member_valid, cfg.model.embedding_dim) == (10, "folds", 32)


def test_bundle_without_training_signatures_is_refused(tmp_path):
    b = synthesize("tiny", seed=0)
    for s in b.signatures.values():
        s.split[:] = "test"
    b.save(tmp_path / "b")
    with pytest.raises(InputError, match="training signatures"):
        train(tmp_path / "b", tmp_path / "run", resolve(config=TINY))
    assert not (tmp_path / "run").exists()
    assert load_bundle(tmp_path / "b").n_genes == 300
