"""`tnfast infer` / `export` / `query` on real stores: kills, resume, torchrun shards, round trips."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from tnfast.data.bundle import TYPES, load_bundle
from tnfast.data.gctx import read_gctx
from tnfast.data.importer import import_bundle
from tnfast.data.synth import synthesize
from tnfast.errors import InputError
from tnfast.export import export
from tnfast.infer import infer
from tnfast.preds import open_preds
from tnfast.query import METHODS, query, read_query
from tnfast.train_ridge import train_ridge

CLI = [sys.executable, "-m", "tnfast"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("infer")
    synthesize("small", seed=1).save(d / "small")
    run_dir, _ = train_ridge(d / "small", d / "run")
    return run_dir


@pytest.fixture(scope="module")
def reference_store(run, tmp_path_factory):
    """An uninterrupted single-process store with a small chunk, the oracle for the others."""
    return infer(tmp_path_factory.mktemp("ref") / "ref.zarr", run, chunk=5)


def chunk_files(store: Path) -> dict[str, bytes]:
    base = store / "predictions" / "c"
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def n_done(store: Path) -> int:
    d = store / "done" / "c"
    return sum(1 for p in d.iterdir() if p.is_file()) if d.is_dir() else 0


@pytest.mark.parametrize("kill_at", [0.05, 0.6])
def test_sigkill_then_resume_gives_identical_store(run, reference_store, tmp_path, kill_at):
    store = tmp_path / "p.zarr"
    total = zarr.open_group(reference_store)["done"].shape[0]
    proc = subprocess.Popen([*CLI, "infer", "--run", run, "--out", store, "--chunk", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while n_done(store) < kill_at * total and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = n_done(store)
    assert 0 < killed_at < total, f"the run was not caught mid-way ({killed_at}/{total} chunks)"
    # what zarr leaves when a kill lands inside a chunk write (its temporary file, before the
    # rename); planted so that every run checks the resume clears it, not only an unlucky kill
    torn = store / "predictions" / "c" / "0" / "0" / "0.0123456789abcdef0123456789abcdef.partial"
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_bytes(b"\x28\xb5")
    # the interrupted store says it is incomplete, and nothing reads it as complete
    assert zarr.open_group(store).attrs["complete"] is False
    with pytest.raises(InputError, match="incomplete"):
        open_preds(store)
    # without --resume the store is left alone
    r = subprocess.run([*CLI, "infer", "--run", run, "--out", store, "--chunk", "5"], capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr
    # resuming with another chunk size is refused: its chunks would not line up
    r = subprocess.run([*CLI, "infer", "--run", run, "--out", store, "--chunk", "6", "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "same run, --chunk" in r.stderr
    r = subprocess.run([*CLI, "infer", "--run", run, "--out", store, "--chunk", "5", "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open_preds(store).attrs["complete"] is True
    assert chunk_files(store) == chunk_files(reference_store)  # byte-identical chunks


def test_torchrun_two_gloo_ranks_write_the_same_store(run, reference_store, tmp_path):
    store = tmp_path / "sharded.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "tnfast", "--", "infer", "--run", str(run), "--out", str(store), "--chunk", "5"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = open_preds(store), open_preds(reference_store)
    np.testing.assert_array_equal(a.predictions[:], b.predictions[:])
    np.testing.assert_array_equal(a.genes, b.genes)
    assert chunk_files(store) == chunk_files(reference_store)


def test_gene_and_type_subsets(run, reference_store, tmp_path):
    ref = open_preds(reference_store)
    pick = ref.genes[[3, 0, 100]]
    (tmp_path / "genes.txt").write_text("\n".join(pick) + "\n")
    store = infer(tmp_path / "sub.zarr", run, types=["OE", "RNAi"], genes=tmp_path / "genes.txt", chunk=2)
    p = open_preds(store)
    assert p.types.tolist() == ["OE", "RNAi"] and p.genes.tolist() == ref.genes[[0, 3, 100]].tolist()
    full = ref.predictions[:]
    np.testing.assert_array_equal(p.predictions[:], full[[2, 0]][:, [0, 3, 100]])
    np.testing.assert_array_equal(p.measured, ref.measured[[2, 0]][:, [0, 3, 100]])
    (tmp_path / "bad.txt").write_text("no-such-gene\n")
    with pytest.raises(InputError, match="not in run"):
        infer(tmp_path / "bad.zarr", run, genes=tmp_path / "bad.txt")
    assert not (tmp_path / "bad.zarr").exists()


def test_overwrite_refuses_a_directory_that_is_not_a_store(run, tmp_path):
    victim = tmp_path / "important"
    victim.mkdir()
    (victim / "thesis.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a Zarr store"):
        infer(victim, run, overwrite=True)
    assert (victim / "thesis.txt").read_text() == "keep me"


def test_a_run_that_cannot_load_leaves_no_store(run, tmp_path):
    """The store is made before the model loads; a model that fails to load takes it away again:
    one line, exit code 2, nothing half-written."""
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    (broken / "model.pt").write_bytes(b"not a torch file")
    r = subprocess.run(CLI + ["infer", "--run", str(broken), "--out", str(tmp_path / "p.zarr")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.pt" in r.stderr and "cannot load model weights" in r.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_export_gctx_round_trips_and_reimports(reference_store, tmp_path):
    p = open_preds(reference_store)
    out = export(reference_store, "gctx", tmp_path / "p.gctx")
    g = read_gctx(out)
    full = p.predictions[:]
    assert g.row_ids.tolist() == p.landmarks.tolist()
    assert g.matrix.shape == (len(p.landmarks), 3 * len(p.genes))
    codes = {"RNAi": "trt_sh", "CRISPR": "trt_xpr", "OE": "trt_oe"}
    for t_i, t in enumerate(TYPES):
        cols = slice(t_i * len(p.genes), (t_i + 1) * len(p.genes))
        assert g.col_ids[cols].tolist() == [f"{codes[t]}:{x}" for x in p.genes.tolist()]
        np.testing.assert_array_equal(g.matrix[:, cols], full[t_i].T)
        np.testing.assert_array_equal(g.col_meta["measured"][cols], p.measured[t_i].astype(np.int8))
    assert g.col_meta["pert_gene_id"].dtype == np.int64
    # `tnfast data import` reads the export back: same genes, types and values
    b = load_bundle(import_bundle(tmp_path / "b", signatures=[out]))
    for t_i, t in enumerate(TYPES):
        s = b.signatures[t]
        order = [p.genes.tolist().index(x) for x in b.genes[s.gene].tolist()]
        np.testing.assert_allclose(s.values, full[t_i][order], rtol=0, atol=0)


def test_export_tsv_subset(reference_store, tmp_path):
    p = open_preds(reference_store)
    (tmp_path / "g.txt").write_text(f"{p.genes[7]}\n{p.genes[1]}\n")
    out = export(reference_store, "tsv", tmp_path / "p.tsv.gz", types=["CRISPR"], genes=tmp_path / "g.txt")
    import gzip

    lines = gzip.open(out, "rt").read().splitlines()
    assert lines[0].split("\t") == ["perturbation", "gene_id", *p.landmarks.tolist()]
    rows = [x.split("\t") for x in lines[1:]]
    assert [r[:2] for r in rows] == [["CRISPR", p.genes[1]], ["CRISPR", p.genes[7]]]
    np.testing.assert_array_equal(np.array([r[2:] for r in rows], float).astype(np.float32),
                                  p.predictions[1][[1, 7]])  # the text reads back to the stored floats
    with pytest.raises(InputError, match="already exists"):
        export(reference_store, "tsv", out)


@pytest.mark.parametrize("method", METHODS)
def test_query_finds_a_planted_signature_at_rank_1(reference_store, tmp_path, method):
    p = open_preds(reference_store)
    rng = np.random.default_rng(0)
    target = p.predictions[2][123]  # OE of gene 123
    noisy = target + 0.02 * rng.standard_normal(len(target))
    f = tmp_path / "q.tsv"
    f.write_text("landmark_id\tvalue\n" + "".join(f"{lm}\t{v}\n" for lm, v in zip(p.landmarks, noisy)))
    hits = query(reference_store, f, method=method)
    assert len(hits) == 3 * len(p.genes)
    assert (hits[0].perturbation, hits[0].gene) == ("OE", p.genes[123])
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_query_cli_table_and_tsv(reference_store, tmp_path):
    p = open_preds(reference_store)
    export(reference_store, "gctx", tmp_path / "p.gctx", genes=None)
    col = f"trt_sh:{p.genes[42]}"
    r = subprocess.run([*CLI, "query", "--preds", reference_store, "--signature", tmp_path / "p.gctx",
                        "--column", col, "--top", "3", "--out", tmp_path / "hits.tsv"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert p.genes[42] in r.stdout
    rows = (tmp_path / "hits.tsv").read_text().splitlines()
    assert rows[0] == "rank\tperturbation\tgene_id\tscore\tmeasured" and len(rows) == 1 + 3 * len(p.genes)
    assert rows[1].split("\t")[:3] == ["1", "RNAi", p.genes[42]]
    r = subprocess.run([*CLI, "query", "--preds", reference_store, "--signature", tmp_path / "p.gctx"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--column" in r.stderr


def test_query_reads_a_probe_keyed_gctx_by_its_entrez_ids(shared_data):
    """Level-3 CMap files key rows by Affymetrix probe (200814_at); the landmark's Entrez id is
    the row metadata pr_gene_id, which a query signature is matched on (as the importer does)."""
    import h5py

    path = shared_data / "gctx-fixtures" / "test_l1000_highprecision.gctx"
    with h5py.File(path, "r") as f:
        probes = f["0/META/ROW/id"][:].astype(str)
        entrez = f["0/META/ROW/pr_gene_id"][:].astype(str)
        col = f["0/META/COL/id"][:].astype(str)[3]
        values = f["0/DATA/0/matrix"][3].astype(float)  # CMap orientation: (columns, rows)
    assert not probes[0].isdigit() and entrez[0].isdigit()
    got = read_query(path, col)
    assert list(got) == entrez.tolist()
    np.testing.assert_array_equal(np.array(list(got.values())), values)


def test_query_rejects_a_signature_over_other_genes(reference_store, tmp_path):
    f = tmp_path / "q.tsv"
    f.write_text("".join(f"x{i}\t{i}\n" for i in range(978)))
    with pytest.raises(InputError, match="landmark ids are in the query"):
        query(reference_store, f)


# ------------------------------------------------------------------------------------------
# the structural inputs: memoised on the bundle, saved with the run, read back at inference
# ------------------------------------------------------------------------------------------
def test_bundle_memoises_structural_inputs_and_the_graph_uses_them():
    import torch

    from tnfast.model import MultiplexGraph

    from tnfast.embed import multiplex_embedding

    b = synthesize("tiny", seed=3)
    a = b.structural_inputs(4, 5)
    np.testing.assert_array_equal(a, multiplex_embedding(b.networks, 4, 5) * np.float32(2))  # x sqrt(dim)
    assert b.structural_inputs(4, 5) is a  # computed once
    assert b.structural_inputs(4, 6) is not a  # other arguments, other inputs
    g = MultiplexGraph.from_bundle(b, structural_dim=4, seed=5)
    assert torch.equal(g.structural, torch.from_numpy(a))
    # what from_arrays computes from the same layers without the memo
    fresh = MultiplexGraph.from_arrays(dict(b.networks), b.n_genes, structural_dim=4, seed=5)
    assert torch.equal(fresh.structural, g.structural)
    # unweighted: weight 1 everywhere, as from_arrays does without edge weights
    u = MultiplexGraph.from_bundle(b, structural_dim=4, seed=5, use_edge_weights=False)
    fresh = MultiplexGraph.from_arrays(dict(b.networks), b.n_genes, use_edge_weights=False, structural_dim=4, seed=5)
    assert torch.equal(u.structural, fresh.structural)
    # a replaced layer is noticed (the memo is keyed on the arrays themselves)
    name = next(iter(b.networks))
    c = b.networks[name]
    b.networks[name] = type(c)(c.indptr.copy(), c.indices.copy(), (c.weights * 2).astype(np.float32))
    assert b.structural_inputs(4, 5) is not a


def test_infer_module_imports_neither_torch_nor_zarr():
    """`tnfast infer` reads the bundle while torch is imported: importing tnfast.infer must not
    import torch (or zarr) itself."""
    code = "import sys, tnfast.infer; print(sorted({'torch', 'zarr', 'scipy'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
