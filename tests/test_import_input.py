"""`tnfast data import` and `data synth` options as users give them, through the real CLI.

Typed signature files (``--signatures TYPE=FILE``, ``--type``), ``--overwrite`` of what is not
a bundle, a negative ``--seed``, ``--feature-genes`` without a .npy matrix, and signature paths
that are no readable matrix. A refusal is exit code 2 and one ``error:`` line, with nothing
written or deleted; counts of real files are read with h5py, not with tnfast's reader.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_line, tnfast

from tnfast.data.bundle import load_bundle
from tnfast.data.gctx import GCT, write_gctx

LM = ["16", "23", "25", "30", "39"]  # landmark ids of the small hand-made files


def tsv(path: Path, genes, landmarks=LM, values=None) -> Path:
    """A TSV signature matrix: one row per gene, one column per landmark."""
    if values is None:
        values = np.arange(len(genes) * len(landmarks), dtype=np.float32).reshape(len(genes), -1) / 10
    rows = ["\t".join(["gene_id", *landmarks])]
    rows += ["\t".join([str(g), *map(str, v)]) for g, v in zip(genes, np.asarray(values).tolist())]
    path.write_text("\n".join(rows) + "\n")
    return path


def tree(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` with its content: what a refused command must leave as it was."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def refused(cwd: Path, *args, expect: list[str]) -> None:
    """The command fails with exit 2 and one error line (the last) holding ``expect``, and
    writes or deletes nothing under ``cwd``."""
    before = tree(cwd)
    error_line(tnfast(*args, cwd=cwd), *expect)
    assert tree(cwd) == before


def imported(cwd: Path, out: Path, *args) -> dict[str, list[str]]:
    """Run `tnfast data import --out OUT ARGS`; the bundle's perturbed genes by type."""
    r = tnfast("data", "import", "--out", out, *args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    b = load_bundle(out)
    return {t: sorted(b.genes[s.gene].tolist(), key=int) for t, s in b.signatures.items()}


def gctx_genes(path: Path, n: int | None = None) -> list[str]:
    """The distinct perturbed genes of a GCTX (its first ``n`` columns), straight from HDF5."""
    with h5py.File(path, "r") as f:
        return sorted({str(g) for g in f["0/META/COL/pert_gene_id"][:n].tolist()}, key=int)


def gctx_as_tsv(src: Path, dst: Path, n: int) -> list[str]:
    """The first ``n`` signatures of a CMap-layout GCTX as a TSV matrix (it carries no type)."""
    with h5py.File(src, "r") as f:
        values = f["0/DATA/0/matrix"][:n]
        landmarks = [x.decode() for x in f["0/META/ROW/id"][()]]
        genes = f["0/META/COL/pert_gene_id"][:n].tolist()
    tsv(dst, genes, landmarks, values)
    return sorted(map(str, genes), key=int)


# --------------------------------------------------------------------------- signature types

def test_gctx_keeps_its_own_type_and_type_names_the_untyped_files(shared_data, tmp_path):
    ex = shared_data / "l1000-example"
    crispr = ex / "signatures_CRISPR.gctx"
    rnai = gctx_as_tsv(ex / "signatures_RNAi.gctx", tmp_path / "rnai.tsv", 6)
    got = imported(tmp_path, tmp_path / "b", "--signatures", crispr, "--signatures", tmp_path / "rnai.tsv",
                   "--type", "RNAi")
    assert len(gctx_genes(crispr)) == 302
    assert got == {"RNAi": rnai, "CRISPR": gctx_genes(crispr)}


def test_typed_file_relabels_a_gctx(shared_data, tmp_path):
    crispr = shared_data / "l1000-example" / "signatures_CRISPR.gctx"
    assert imported(tmp_path, tmp_path / "b", "--signatures", f"rnai={crispr}") == {"RNAi": gctx_genes(crispr)}


def test_tsvs_of_different_types_in_one_import(tmp_path):
    rnai = np.arange(10, dtype=np.float32).reshape(2, len(LM))
    tsv(tmp_path / "a.tsv", [1, 7], values=rnai)
    b = tsv(tmp_path / "b.tsv", [7, 9], values=np.full((2, len(LM)), 5.0))
    # '=' in a path with no type before it: still a path, typed by --type
    c = tsv(tmp_path / "x=y.tsv", [3])
    got = imported(tmp_path, tmp_path / "out", "--signatures", "RNAi=a.tsv", "--signatures", f"oe={b.name}",
                   "--signatures", c.name, "--type", "CRISPR")
    assert got == {"RNAi": ["1", "7"], "CRISPR": ["3"], "OE": ["7", "9"]}
    bundle = load_bundle(tmp_path / "out")
    s = bundle.signatures["RNAi"]
    row = bundle.genes[s.gene].tolist().index("7")
    np.testing.assert_array_equal(s.values[row], rnai[1])  # not averaged with OE's gene 7


def test_type_given_twice_is_refused(tmp_path):
    tsv(tmp_path / "a.tsv", [1])
    tsv(tmp_path / "b.tsv", [2])
    refused(tmp_path, "data", "import", "--out", tmp_path / "out", "--signatures", "a.tsv", "--type", "RNAi",
            "--signatures", "b.tsv", "--type", "OE", expect=["--type", "--signatures TYPE=FILE"])


# --------------------------------------------------------------------------- --overwrite

SYNTH = ("data", "synth", "--scale", "tiny")


@pytest.mark.parametrize("command", ["import", "synth"])
@pytest.mark.parametrize("target", ["folder", "file"])
def test_overwrite_leaves_what_is_not_a_bundle_alone(tmp_path, command, target):
    out = tmp_path / "d"
    if target == "folder":
        out.mkdir()
        (out / "notes.txt").write_text("x\n")
    else:
        out.write_text("x\n")
    args = (("data", "import", "--signatures", tsv(tmp_path / "s.tsv", [1]), "--type", "RNAi")
            if command == "import" else SYNTH)
    refused(tmp_path, *args, "--out", out, "--overwrite", expect=[str(out), "not a tnfast bundle", "left alone"])


def test_overwrite_replaces_a_bundle_or_fills_an_empty_directory(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    assert imported(tmp_path, out, "--signatures", tsv(tmp_path / "s.tsv", [1]), "--type", "RNAi",
                    "--overwrite") == {"RNAi": ["1"]}
    assert imported(tmp_path, out, "--signatures", "OE=s.tsv", "--overwrite") == {"OE": ["1"]}
    r = tnfast(*SYNTH, "--out", out, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_bundle(out).truth  # the synthetic bundle took its place


# --------------------------------------------------------------------------- other options

@pytest.mark.parametrize("command", ["import", "synth"])
def test_negative_seed_is_refused(tmp_path, command):
    args = (("data", "import", "--signatures", tsv(tmp_path / "s.tsv", [1]), "--type", "RNAi")
            if command == "import" else SYNTH)
    refused(tmp_path, *args, "--out", tmp_path / "b", "--seed", "-1", expect=["--seed: must be >= 0, got -1"])


def test_feature_genes_without_npy_features_is_refused(tmp_path):
    (tmp_path / "f.tsv").write_text("gene_id\tf0\n1\t0.5\n2\t0.25\n")
    (tmp_path / "g.txt").write_text("2\n1\n")
    refused(tmp_path, "data", "import", "--out", tmp_path / "b", "--features", "f.tsv", "--feature-genes", "g.txt",
            expect=["--feature-genes", ".npy"])


def _gzipped_gctx(d: Path) -> Path:
    g = GCT(matrix=np.zeros((len(LM), 1), np.float32), row_ids=np.array(LM), col_ids=np.array(["a"]),
            col_meta={"pert_type": np.array(["trt_sh"]), "pert_gene_id": np.array([7])})
    write_gctx(d / "s.gctx", g)
    with gzip.open(d / "s.gctx.gz", "wb") as f:
        f.write((d / "s.gctx").read_bytes())
    (d / "s.gctx").unlink()
    return d / "s.gctx.gz"


@pytest.mark.parametrize("source, expect", [
    (lambda d: (d / "sigs").mkdir() or d / "sigs", ["is a directory"]),
    (_gzipped_gctx, ["s.gctx.gz", "uncompressed HDF5", "gunzip"]),
], ids=["directory", "gzipped-gctx"])
def test_signature_path_that_is_no_matrix_says_why(tmp_path, source, expect):
    path = source(tmp_path)
    refused(tmp_path, "data", "import", "--out", tmp_path / "b", "--signatures", path, expect=[str(path), *expect])
