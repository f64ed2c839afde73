"""Outputs and options of infer, export, query, evaluate and bench as users got them wrong:
each refusal is exit 2 with one line naming the option or file, before any work, nothing written."""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import error_line, tnfast

from tnfast.cli import app
from tnfast.data.bundle import load_bundle
from tnfast.data.gctx import GCT, write_gctx


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny synthetic bundle, a ridge run on it and the run's preds.zarr, made through the CLI."""
    d = tmp_path_factory.mktemp("outin")
    for args in (("data", "synth", "--out", d / "tiny", "--scale", "tiny", "--seed", "3"),
                 ("train", "--model", "ridge", "--data", d / "tiny", "--out", d / "run"),
                 ("infer", "--run", d / "run", "--out", d / "preds.zarr", "--chunk", "50")):
        r = tnfast(*args, cwd=d)
        assert r.returncode == 0, r.stderr
    return d


def query_tsv(path, landmarks, values) -> str:
    path.write_text("landmark_id\tvalue\n" + "".join(f"{lm}\t{v}\n" for lm, v in zip(landmarks, values)))
    return path


def planted_query(work, tmp_path):
    """A query signature: the store's first RNAi prediction, over every landmark."""
    import zarr

    root = zarr.open_group(work / "preds.zarr", mode="r")
    landmarks = [str(x) for x in root["landmark"][:].tolist()]
    return query_tsv(tmp_path / "q.tsv", landmarks, root["predictions"][0, 0].tolist())


def run_id(run_dir) -> str:
    return json.loads((run_dir / "run.json").read_text())["run_id"]


# --------------------------------------------------------------------------- 1: --types given twice

@pytest.mark.parametrize("command", ["infer", "export", "query"])
def test_a_type_given_twice_is_refused(work, tmp_path, command):
    out = tmp_path / "out"
    argv = {"infer": ["infer", "--run", work / "run", "--out", out, "--types", "RNAi,CRISPR,RNAi"],
            "export": ["export", work / "preds.zarr", "--format", "tsv", "--out", out, "--types", "OE,OE"],
            "query": ["query", "--preds", work / "preds.zarr", "--signature", planted_query(work, tmp_path),
                      "--out", out, "--types", "RNAi,RNAi"]}[command]
    line = error_line(tnfast(*argv, cwd=tmp_path), "--types")
    assert line.endswith(f"--types: {'OE' if command == 'export' else 'RNAi'} given twice")
    assert not out.exists()


# --------------------------------------------------------------------------- 2: existing outputs

def test_query_out_refuses_an_existing_file_unless_overwrite(work, tmp_path):
    q = planted_query(work, tmp_path)
    hits = tmp_path / "hits.tsv"
    hits.write_text("mine\n")
    error_line(tnfast("query", "--preds", work / "preds.zarr", "--signature", q, "--out", hits, cwd=tmp_path),
            str(hits), "already exists (pass --overwrite to replace it)")
    assert hits.read_text() == "mine\n"
    r = tnfast("query", "--preds", work / "preds.zarr", "--signature", q, "--out", hits, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert hits.read_text().startswith("rank\tperturbation\tgene_id\tscore\tmeasured\n")


def test_evaluate_refuses_an_existing_json_or_report_before_the_work(work, tmp_path):
    js = tmp_path / "eval.json"
    js.write_text("{}\n")
    r = tnfast("evaluate", "--run", work / "run", "--json", js, cwd=tmp_path)
    error_line(r, str(js), "already exists (pass --overwrite to replace it)")
    assert "loading" not in r.stderr and js.read_text() == "{}\n"  # refused before the bundle was read
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text("earlier")
    r = tnfast("evaluate", "--run", work / "run", "--report", report, cwd=tmp_path)
    error_line(r, str(report), "already exists (pass --overwrite to replace it)")
    assert "loading" not in r.stderr and (report / "index.html").read_text() == "earlier"
    r = tnfast("evaluate", "--run", work / "run", "--json", js, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(js.read_text())["types"]) == {"RNAi", "CRISPR", "OE"}


def test_export_to_a_directory_is_refused_as_a_directory(work, tmp_path):
    (tmp_path / "d").mkdir()
    for extra in ((), ("--overwrite",)):
        r = tnfast("export", work / "preds.zarr", "--format", "tsv", "--out", tmp_path / "d", *extra, cwd=tmp_path)
        line = error_line(r, str(tmp_path / "d"), "is a directory")
        assert "already exists" not in line
    assert list((tmp_path / "d").iterdir()) == []


# --------------------------------------------------------------------------- 3: .gz with GCTX

def test_export_gctx_refuses_a_gz_name(work, tmp_path):
    out = tmp_path / "x.gctx.gz"
    error_line(tnfast("export", work / "preds.zarr", "--format", "gctx", "--out", out, cwd=tmp_path),
            str(out), "--format gctx", ".gctx")
    assert not out.exists()
    r = tnfast("export", work / "preds.zarr", "--format", "tsv", "--out", tmp_path / "x.tsv.gz", "--types", "OE",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.tsv.gz").read_bytes()[:2] == b"\x1f\x8b"  # TSV is still gzipped


# --------------------------------------------------------------------------- 4: --top and constant queries

@pytest.mark.parametrize("top", ["0", "-1"])
def test_query_top_below_one_is_refused(work, tmp_path, top):
    r = tnfast("query", "--preds", work / "preds.zarr", "--signature", planted_query(work, tmp_path),
               "--top", top, cwd=tmp_path)
    error_line(r, "--top", f"must be >= 1, got {top}")


@pytest.mark.parametrize("method", ["pearson", "wtcs"])
def test_a_constant_query_signature_is_refused(work, tmp_path, method):
    landmarks = load_bundle(work / "tiny", truth=False).landmarks.tolist()
    q = query_tsv(tmp_path / "flat.tsv", landmarks, [0.25] * len(landmarks))
    r = tnfast("query", "--preds", work / "preds.zarr", "--signature", q, "--method", method,
               "--out", tmp_path / "hits.tsv", cwd=tmp_path)
    error_line(r, str(q), "the query signature is constant")
    assert not (tmp_path / "hits.tsv").exists()


# --------------------------------------------------------------------------- 5: --orgdb, --json checked first

@pytest.mark.parametrize("kind, words", [("missing", "no such file"), ("text", "not an SQLite database"),
                                         ("directory", "directory")])
def test_evaluate_checks_orgdb_before_the_work(work, tmp_path, kind, words):
    db = tmp_path / "org.Hs.eg.sqlite"
    if kind == "text":
        db.write_text("gene_id\tgo_id\n1\tGO:1\n")
    elif kind == "directory":
        db.mkdir()
    r = tnfast("evaluate", "--run", work / "run", "--orgdb", db, "--json", tmp_path / "e.json", cwd=tmp_path)
    error_line(r, str(db), words)
    assert "loading" not in r.stderr and not (tmp_path / "e.json").exists()


def test_evaluate_json_to_a_directory_is_refused_before_the_work(work, tmp_path):
    r = tnfast("evaluate", "--run", work / "run", "--json", tmp_path, cwd=tmp_path)
    error_line(r, str(tmp_path), "is a directory")
    assert "loading" not in r.stderr


# --------------------------------------------------------------------------- 6: a store of another run

def test_evaluate_refuses_a_store_written_by_another_run(work, tmp_path):
    r = tnfast("train", "--model", "ridge", "--data", work / "tiny", "--out", tmp_path / "other", "--seed", "1",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tnfast("evaluate", "--preds", work / "preds.zarr", "--run", tmp_path / "other", cwd=tmp_path)
    error_line(r, str(work / "preds.zarr"), run_id(work / "run"), run_id(tmp_path / "other"))
    r = tnfast("evaluate", "--preds", work / "preds.zarr", "--run", work / "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # its own run


# --------------------------------------------------------------------------- 7, 9: plain ids, singular

def test_landmark_mismatch_names_plain_ids(work, tmp_path):
    b = load_bundle(work / "tiny", truth=False)
    s = b.signatures["RNAi"]
    rows = s.rows("test")
    keep = len(b.landmarks) - 5  # the last five landmarks are missing from the file
    gct = GCT(s.values[rows][:, :keep].T.copy(), b.landmarks[:keep], np.array([f"c{i}" for i in range(len(rows))]),
              col_meta={"pert_type": np.array(["trt_sh"] * len(rows)),
                        "pert_gene_id": b.genes[s.gene[rows]].astype(np.int64)})
    write_gctx(tmp_path / "truth.gctx", gct)
    r = tnfast("evaluate", "--run", work / "run", "--truth", tmp_path / "truth.gctx", cwd=tmp_path)
    line = error_line(r, "landmark ids differ", f"({keep} vs {len(b.landmarks)}; {b.landmarks[keep]} is missing)")
    assert "np.str_" not in line


def test_genes_missing_from_a_store_are_plain_and_singular(work, tmp_path):
    b = load_bundle(work / "tiny", truth=False)
    s = b.signatures["RNAi"]
    test_genes = b.genes[s.gene[s.rows("test")]].tolist()
    # a store of the same run holding every gene but one evaluated RNAi gene
    (tmp_path / "genes.txt").write_text("\n".join(g for g in b.genes.tolist() if g != test_genes[0]) + "\n")
    r = tnfast("infer", "--run", work / "run", "--genes", tmp_path / "genes.txt", "--out", tmp_path / "p.zarr",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tnfast("evaluate", "--preds", tmp_path / "p.zarr", "--run", work / "run", cwd=tmp_path)
    line = error_line(r, str(tmp_path / "p.zarr"), f"1 evaluated RNAi gene is missing from the store (e.g. {test_genes[0]})")
    assert "np.str_" not in line


def test_one_unknown_gene_id_is_singular(work, tmp_path):
    g = load_bundle(work / "tiny", truth=False).genes[0]
    (tmp_path / "genes.txt").write_text(f"{g}\n999999999\n")
    r = tnfast("infer", "--run", work / "run", "--genes", tmp_path / "genes.txt", "--out", tmp_path / "p.zarr",
               cwd=tmp_path)
    error_line(r, str(tmp_path / "genes.txt"), "1 gene id is not in run", "'999999999'")
    assert not (tmp_path / "p.zarr").exists()


# --------------------------------------------------------------------------- 8: evaluate --gene-field

def test_evaluate_truth_gene_field(work, tmp_path):
    b = load_bundle(work / "tiny", truth=False)
    s = b.signatures["OE"]
    rows = s.rows("test")
    gct = GCT(s.values[rows].T.copy(), b.landmarks, np.array([f"trt_oe:{i}" for i in range(len(rows))]),
              col_meta={"pert_type": np.array(["trt_oe"] * len(rows)),
                        "gene_entrez": b.genes[s.gene[rows]].astype(np.int64)})
    truth = tmp_path / "truth.gctx"
    write_gctx(truth, gct)
    error_line(tnfast("evaluate", "--run", work / "run", "--truth", truth, cwd=tmp_path),
            str(truth), "'pert_gene_id'", "--gene-field")
    r = tnfast("evaluate", "--run", work / "run", "--truth", truth, "--gene-field", "gene_entrez",
               "--json", tmp_path / "e.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["split"] == "truth-files" and summary["types"]["OE"]["n"] == len(rows)


# --------------------------------------------------------------------------- 10: bench memory ratio

def test_gat_bench_line_says_more_memory_when_tnfast_needs_more():
    from tnfast.benchmarks.bench_gat import fmt  # (imports torch)

    row = {"shape": "tiny", "edges": 1000, "H": 4, "D": 64, "dtype": "float32", "mode": "fwd",
           "provider": "tnfast_cpu", "median_ms": 1.0, "peak_mib": 20.0, "status": "ok", "speedup_vs_pyg": 3.0}
    assert fmt({**row, "memory_ratio_vs_pyg": 0.5}).endswith("x3.00 vs pyg  2.0x more memory")  # PyG 10, tnfast 20 MiB
    assert fmt({**row, "memory_ratio_vs_pyg": 4.0}).endswith("x3.00 vs pyg  4.0x less memory")


# --------------------------------------------------------------------------- 11: which run infer used

def test_infer_without_run_names_the_run_it_used(work, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(work / "run", runs / "complete")
    newer = runs / "interrupted"  # a newer run that never finished: passed over
    newer.mkdir()
    (newer / "train.json").write_text(json.dumps({"created": time.time() + 60}))
    r = tnfast("infer", "--out", tmp_path / "p.zarr", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = [x for x in r.stderr.splitlines() if x.startswith("· run ")]
    assert len(said) == 1 and str(runs / "complete") in said[0] and "interrupted" not in said[0], r.stderr


# --------------------------------------------------------------------------- 12: the README's Commands table

@pytest.mark.parametrize("command", ["data synth", "infer", "evaluate", "export", "query", "bench"])
def test_readme_commands_table_lists_every_option(command):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(x for x in readme.splitlines() if re.match(rf"\| `tnfast {command}[ `]", x))
    cmd = typer.main.get_command(app)
    for word in command.split():
        cmd = cmd.commands[word]
    options = {o for p in cmd.params for o in p.opts if o.startswith("--") and o != "--help"}
    listed = set(re.findall(r"--[a-z][a-z-]*", row.split("` |")[0]))
    assert options - listed == set(), row
