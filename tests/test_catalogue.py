"""The bad-input catalogue: every hostile file that can reach the data side, through the real CLI.

Each case builds one small hostile input in a fresh directory (a valid baseline with one thing
wrong), runs `python -m tnfast ...` as a user would, and checks the contract of issue 9:
exit code 2; one ``error:`` line on stderr (after any progress lines) that names the offending
file or option and the problem; no traceback; and no output at the output path, nor a
temporary sibling left behind. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from conftest import SHARED_DATA, tnfast
from test_orgdb import make_db

from tnfast.data.bundle import Bundle, Locations, Signatures, load_bundle
from tnfast.data.gctx import GCT, write_gctx

LM = [str(x) for x in (16, 23, 25, 30, 39, 47, 102, 128, 142, 154)]  # landmark ids of the small files
GENES = [str(g) for g in range(1, 9)]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# --------------------------------------------------------------------------- valid baselines


def gctx(path: Path, values=None, genes=GENES, landmarks=LM, codes=None) -> Path:
    """A valid CMap-layout GCTX: one trt_sh signature per gene over ``landmarks``."""
    if values is None:
        values = np.random.default_rng(0).uniform(-1, 1, (len(landmarks), len(genes))).astype(np.float32)
    codes = codes or ["trt_sh"] * len(genes)
    write_gctx(path, GCT(np.asarray(values, np.float32), np.array(landmarks, dtype=str),
                         np.array([f"{c}:{g}" for c, g in zip(codes, genes)]), {},
                         {"pert_type": np.array(codes), "pert_gene_id": np.array(genes, dtype=np.int64)}))
    return path


def raw_gctx(path: Path, stored, row_ids, col_ids, col_meta: dict | None = None) -> Path:
    """A GCTX written with h5py alone, without write_gctx's checks (so it can be wrong)."""
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        f["0/DATA/0/matrix"] = stored
        f["0/META/ROW/id"] = np.array(row_ids, dtype="S")
        f["0/META/COL/id"] = np.array(col_ids, dtype="S")
        for k, v in (col_meta or {}).items():
            f[f"0/META/COL/{k}"] = v
    return path


def text(path: Path, content: str | bytes) -> Path:
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def tsv_matrix(path: Path, rows=None) -> Path:
    rows = rows if rows is not None else [[g, *(f"{0.1 * i:.1f}" for i in range(len(LM)))] for g in GENES]
    sep = "," if path.name.endswith(".csv") else "\t"
    return text(path, "\n".join(sep.join(r) for r in [["gene_id", *LM], *rows]) + "\n")


def edges(path: Path) -> Path:
    return text(path, "gene1\tgene2\tscore\n1\t2\t0.5\n2\t3\t1\n3\t4\t2\n5\t6\t0.25\n")


def features(path: Path) -> Path:
    return text(path, "gene_id\tf0\tf1\n" + "".join(f"{g}\t0.{g}\t-0.{g}\n" for g in GENES))


def locations(d: Path, rows: str) -> Path:
    return text(d / "loc.tsv", "gene_id\tchromosome\tstart\tarm\n" + rows)


def split(path: Path) -> Path:
    return text(path, "gene_id\tsplit\n" + "".join(f"{g}\t{'train' if int(g) < 7 else 'valid'}\n" for g in GENES))


def store(path: Path, version: int = 1, complete: bool = True, chunk: int = 4) -> Path:
    """A small valid preds.zarr as `tnfast infer` writes it (the README's output contract)."""
    types, n = ["RNAi", "CRISPR", "OE"], len(GENES)
    root = zarr.open_group(path, mode="w")
    root.attrs.update({"format": "tnfast-preds", "version": version, "tnfast_version": "0", "run_id": "r",
                       "units": "u", "chunk": chunk, "complete": complete})
    pred = root.create_array("predictions", shape=(3, n, len(LM)), chunks=(3, chunk, len(LM)), dtype="float32",
                             fill_value=np.nan, dimension_names=("perturbation", "gene", "landmark"))
    pred[:] = np.random.default_rng(1).normal(size=pred.shape).astype(np.float32)
    for dim, values in (("perturbation", types), ("gene", GENES), ("landmark", LM)):
        root.create_array(dim, shape=(len(values),), dtype=str, dimension_names=(dim,))[:] = np.array(values)
    root.create_array("measured", data=np.ones((3, n), bool), dimension_names=("perturbation", "gene"))
    done = root.create_array("done", shape=(-(-n // chunk),), chunks=(1,), dtype="uint8", fill_value=0)
    done[:] = 1
    return path


def bundle(path: Path) -> Path:
    Bundle(np.array(GENES), np.array(LM), signatures={"RNAi": Signatures(
        np.arange(3, dtype=np.int32), np.zeros((3, len(LM)), np.float32), np.array(["train"] * 3))},
        meta={"name": "b"}).save(path)
    return path


def located(path: Path) -> Path:
    """A bundle with gene and landmark locations."""
    gene_loc, landmark_loc = (Locations(np.full(n, "1"), np.arange(n, dtype=np.int64), np.full(n, "p"))
                              for n in (len(GENES), len(LM)))
    Bundle(np.array(GENES), np.array(LM), meta={"name": "b"}, gene_locations=gene_loc,
           landmark_locations=landmark_loc).save(path)
    return path


# --------------------------------------------------------------------------- the cases
# Each case: id -> build(d) -> (argv, fragments); d is an empty directory to build the input in,
# the output path is always d / "out". The first fragment names the offending file (or option),
# the others say the problem; all must appear in the error line.

def imp(d: Path, *args) -> list:
    return ["data", "import", "--out", d / "out", *args]


def sig(d: Path, f: Path, *extra) -> list:
    return imp(d, "--signatures", f, *extra)


def folder(p: Path) -> Path:
    p.mkdir()
    return p


def unreadable(f: Path) -> Path:
    f.chmod(0)
    return f


def real_truncated(d: Path, keep: float) -> Path:
    src = SHARED_DATA / "l1000-example" / "signatures_RNAi.gctx"
    if not src.is_file():
        pytest.skip("../shared/data is not present")
    data = src.read_bytes()
    return text(d / "real.gctx", data[:int(len(data) * keep)])


def half(f: Path) -> Path:
    data = f.read_bytes()
    return text(f, data[:len(data) // 2])


def with_nonfinite(value):
    v = np.zeros((len(LM), len(GENES)), np.float32)
    v[3, 2] = value
    return v


def gz(path: Path, content: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(content)
    return path


def orgdb_without(d: Path, table: str) -> Path:
    return make_db(d / "org.Hs.eg.sqlite", skip=(table,))


def sqlite_empty(d: Path) -> Path:
    f = d / "org.Hs.eg.sqlite"
    sqlite3.connect(f).execute("CREATE TABLE metadata (name TEXT, value TEXT)").connection.commit()
    return f


def orgdb_args(d, f, layers="go-bp"):
    return imp(d, "--orgdb", f, "--layers", layers)


def manifest(d: Path, **changes) -> Path:
    b = bundle(d / "b")
    m = json.loads((b / "bundle.json").read_text())
    m.update(changes)
    (b / "bundle.json").write_text(json.dumps(m))
    return b


def first_chunk(s: Path) -> Path:
    return next(p for p in sorted((s / "predictions").rglob("*")) if p.is_file() and p.name != "zarr.json")


def damaged_chunk(d: Path) -> Path:
    s = store(d / "p.zarr")
    half(first_chunk(s))
    return s


def missing_chunk(d: Path) -> Path:
    s = store(d / "p.zarr")
    first_chunk(s).unlink()
    return s


def not_a_store(d: Path) -> Path:
    text(folder(d / "p.zarr") / "notes.txt", "hello")
    return d / "p.zarr"


def store_attrs(d: Path, **attrs) -> Path:
    s = store(d / "p.zarr")
    root = zarr.open_group(s, mode="r+")
    root.attrs.update(attrs)
    return s


def query_tsv(d: Path, content: str | None = None) -> Path:
    return text(d / "q.tsv", content if content is not None else
                "landmark_id\tvalue\n" + "".join(f"{lm}\t{i - 4.5}\n" for i, lm in enumerate(LM)))


def query(d, s, q, *extra):
    return ["query", "--preds", s, "--signature", q, "--out", d / "out", *extra]


def export(d, s, *extra, fmt="gctx"):
    return ["export", s, "--format", fmt, "--out", d / "out", *extra]


Build = Callable[[Path], tuple[list, list]]


def file_case(build):
    """Cases whose first fragment is the offending file, made by build(d) -> (path, argv-maker, words)."""
    def run(d):
        f, argv, words = build(d)
        return argv(f), [str(f), *words]
    return run


CASES: dict[str, Build] = {
    # ---- GCTX signatures
    "gctx_truncated": file_case(lambda d: (half(gctx(d / "s.gctx")), lambda f: sig(d, f), ["truncated"])),
    "gctx_real_truncated_header": file_case(lambda d: (real_truncated(d, 0.002), lambda f: sig(d, f), ["truncated"])),
    "gctx_real_truncated_data": file_case(lambda d: (real_truncated(d, 0.9), lambda f: sig(d, f), ["truncated"])),
    "gctx_empty": file_case(lambda d: (text(d / "s.gctx", b""), lambda f: sig(d, f), ["empty"])),
    "gctx_is_text": file_case(lambda d: (text(d / "s.gctx", "gene_id\t16\n1\t0.5\n"), lambda f: sig(d, f), ["not a readable HDF5"])),
    "gctx_is_directory": file_case(lambda d: (folder(d / "s.gctx"), lambda f: sig(d, f),
                                       ["directory"])),
    "gctx_missing": file_case(lambda d: (d / "nope.gctx", lambda f: sig(d, f), ["no such file"])),
    "gctx_matrix_not_transposed": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((len(LM), 3), np.float32), LM,
                                                         ["a", "b", "c"]), lambda f: sig(d, f, "--type", "RNAi"),
                                                ["/0/META/ROW/id", "shape"])),
    "gctx_matrix_1d": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros(10, np.float32), LM, ["a"]),
                                    lambda f: sig(d, f, "--type", "RNAi"), ["/0/DATA/0/matrix", "2-D"])),
    "gctx_matrix_text": file_case(lambda d: (raw_gctx(d / "s.gctx", np.array([[b"x"] * len(LM)]), LM, ["a"]),
                                      lambda f: sig(d, f, "--type", "RNAi"), ["/0/DATA/0/matrix", "numeric"])),
    "gctx_meta_wrong_length": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((2, len(LM)), np.float32), LM,
                                                     ["a", "b"], {"pert_gene_id": np.array([1, 2, 3])}),
                                            lambda f: sig(d, f, "--type", "RNAi"), ["/0/META/COL/pert_gene_id"])),
    "gctx_nan": file_case(lambda d: (gctx(d / "s.gctx", with_nonfinite(np.nan)), lambda f: sig(d, f),
                              ["column trt_sh:3", "NaN", "landmark 30"])),
    "gctx_inf": file_case(lambda d: (gctx(d / "s.gctx", with_nonfinite(-np.inf)), lambda f: sig(d, f),
                              ["column trt_sh:3", "infinite", "-inf"])),
    "gctx_no_landmarks": file_case(lambda d: (gctx(d / "s.gctx", values=np.zeros((0, len(GENES))), landmarks=[]),
                                       lambda f: sig(d, f), ["no landmark rows"])),
    "gctx_duplicate_column_ids": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((2, len(LM)), np.float32), LM,
                                                        ["a", "a"], {"pert_gene_id": np.array([1, 2])}),
                                               lambda f: sig(d, f, "--type", "RNAi"), ["duplicate column id 'a'"])),
    "gctx_duplicate_landmark_ids": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((1, 3), np.float32),
                                                          ["16", "23", "16"], ["a"], {"pert_gene_id": np.array([1])}),
                                                 lambda f: sig(d, f, "--type", "RNAi"), ["duplicate row id '16'"])),
    "gctx_no_gene_field": file_case(lambda d: (gctx(d / "s.gctx"), lambda f: sig(d, f, "--gene-field", "pr_gene"),
                                        ["'pr_gene'", "--gene-field"])),
    "gctx_gene_id_nan": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((2, len(LM)), np.float32), LM, ["a", "b"],
                                               {"pert_gene_id": np.array([1.0, np.nan]),
                                                "pert_type": np.array([b"trt_sh"] * 2)}),
                                      lambda f: sig(d, f), ["column b", "perturbed gene"])),
    "gctx_gene_id_missing_marker": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((2, len(LM)), np.float32), LM,
                                                          ["a", "b"], {"pert_gene_id": np.array([b"-666", b"5"]),
                                                                       "pert_type": np.array([b"trt_sh"] * 2)}),
                                                 lambda f: sig(d, f), ["column a", "perturbed gene"])),
    "gctx_only_compounds": file_case(lambda d: (gctx(d / "s.gctx", codes=["trt_cp"] * len(GENES)), lambda f: sig(d, f),
                                         ["no genetic perturbation"])),
    "gctx_landmarks_match_nothing": file_case(lambda d: (gctx(d / "b.gctx", landmarks=[str(9000 + i) for i in range(10)]),
                                                  lambda f: sig(d, gctx(d / "a.gctx"), "--signatures", f),
                                                  ["landmark ids differ", "a.gctx"])),
    "gctx_unreadable": file_case(lambda d: (unreadable(gctx(d / "s.gctx")), lambda f: sig(d, f), ["permission denied"])),
    # rich markup in a file name ('[/bold]' closes nothing): printed as is, not a MarkupError
    "gctx_markup_in_name": file_case(lambda d: (half(gctx(folder(d / "a[") / "bold] [red].gctx")),
                                         lambda f: sig(d, f), ["truncated"])),
    "type_unknown": lambda d: (sig(d, gctx(d / "s.gctx"), "--type", "siRNA"), ["--type", "'siRNA'"]),
    "gene_field_empty_metadata": file_case(lambda d: (raw_gctx(d / "s.gctx", np.zeros((1, len(LM)), np.float32), LM, ["a"],
                                                        {"pert_gene_id": np.array([b""])}),
                                               lambda f: sig(d, f, "--type", "RNAi"), ["column a", "perturbed gene"])),
    # ---- TSV/CSV signature matrices
    "tsv_ragged": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t23\n1\t0.5\t0.1\n2\t0.2\n"),
                                lambda f: sig(d, f, "--type", "RNAi"), ["line 3", "expected 3 columns"])),
    "csv_ragged": file_case(lambda d: (text(d / "s.csv", "gene_id,16,23\n1,0.5,0.1,0.9\n"),
                                lambda f: sig(d, f, "--type", "RNAi"), ["line 2", "expected 3 columns"])),
    "tsv_empty": file_case(lambda d: (text(d / "s.tsv", ""), lambda f: sig(d, f, "--type", "RNAi"), ["empty"])),
    "tsv_header_only": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t23\n"), lambda f: sig(d, f, "--type", "RNAi"),
                                     ["no data lines"])),
    "tsv_non_numeric": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t23\n1\t0.5\t0.1\n2\t0.2\tup\n"),
                                     lambda f: sig(d, f, "--type", "RNAi"), ["line 3, column 23", "'up'"])),
    "tsv_nan": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t23\n1\t0.5\tNaN\n"), lambda f: sig(d, f, "--type", "RNAi"),
                             ["line 2, column 23", "finite"])),
    "tsv_inf": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t23\n1\tinf\t0.1\n"), lambda f: sig(d, f, "--type", "RNAi"),
                             ["line 2, column 16", "finite"])),
    "tsv_duplicate_landmark_columns": file_case(lambda d: (text(d / "s.tsv", "gene_id\t16\t16\n1\t0.5\t0.1\n"),
                                                    lambda f: sig(d, f, "--type", "RNAi"),
                                                    ["duplicate landmark id '16'"])),
    "tsv_binary": file_case(lambda d: (text(d / "s.tsv", bytes(range(256)) * 4), lambda f: sig(d, f, "--type", "RNAi"),
                                ["not UTF-8"])),
    "tsv_gz_not_gzip": file_case(lambda d: (text(d / "s.tsv.gz", "gene_id\t16\n1\t0.5\n"),
                                     lambda f: sig(d, f, "--type", "RNAi"), ["gzip"])),
    "tsv_without_type": file_case(lambda d: (tsv_matrix(d / "s.tsv"), lambda f: sig(d, f), ["--type"])),
    "tsv_unreadable": file_case(lambda d: (unreadable(tsv_matrix(d / "s.tsv")), lambda f: sig(d, f, "--type", "RNAi"),
                                    ["permission denied"])),
    "tsv_is_directory": file_case(lambda d: (folder(d / "s.tsv"), lambda f: sig(d, f, "--type", "RNAi"),
                                      ["directory"])),
    # ---- features
    "features_nan": file_case(lambda d: (text(d / "f.tsv", "gene_id\tf0\n1\t0.5\n2\tnan\n"), lambda f: imp(d, "--features", f),
                                  ["line 3, column f0", "finite"])),
    "features_duplicate_ids": file_case(lambda d: (text(d / "f.tsv", "gene_id\tf0\n1\t0.5\n2\t0.2\n1\t0.3\n"),
                                            lambda f: imp(d, "--features", f), ["lines 2 and 4", "duplicate"])),
    "features_empty_gene_id": file_case(lambda d: (text(d / "f.csv", "gene_id,f0\n1,0.5\n,0.2\n"),
                                            lambda f: imp(d, "--features", f), ["line 3", "empty"])),
    "features_gz_truncated": file_case(lambda d: (text(d / "f.tsv.gz", gz(d / "x.gz", features(d / "x").read_bytes())
                                                .read_bytes()[:30]), lambda f: imp(d, "--features", f), ["gzip"])),
    "features_npy_pickled": file_case(lambda d: ((np.save(d / "f.npy", np.array([{"a": 1}], dtype=object)), d / "f.npy")[1],
                                          lambda f: imp(d, "--features", f, "--feature-genes", text(d / "g", "1\n")),
                                          ["pickle"])),
    "features_npy_garbage": file_case(lambda d: (text(d / "f.npy", b"\x93NUMPY garbage"),
                                          lambda f: imp(d, "--features", f, "--feature-genes", text(d / "g", "1\n")),
                                          [".npy"])),
    "features_is_directory": file_case(lambda d: (folder(d / "f.tsv"), lambda f: imp(d, "--features", f),
                                           ["directory"])),
    # ---- edge lists
    "edges_one_column": file_case(lambda d: (text(d / "e.tsv", "1\n2\n"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                      ["line 1", "2 columns"])),
    "edges_four_columns": file_case(lambda d: (text(d / "e.tsv", "1\t2\t0.5\t7\n"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                        ["line 1", "2 or 3 columns"])),
    "edges_ragged": file_case(lambda d: (text(d / "e.tsv", "1\t2\n2\t3\t0.5\n"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                  ["line 2", "expected 2 columns"])),
    "edges_non_numeric_weight": file_case(lambda d: (text(d / "e.tsv", "a\tb\tscore\n1\t2\t0.5\n2\t3\thigh\n"),
                                              lambda f: imp(d, "--edges", f"ppi={f}"), ["line 3, column 3", "'high'"])),
    "edges_negative_weight": file_case(lambda d: (text(d / "e.tsv", "1\t2\t0.5\n2\t3\t-1\n"),
                                           lambda f: imp(d, "--edges", f"ppi={f}"), ["line 2", "> 0"])),
    "edges_nan_weight": file_case(lambda d: (text(d / "e.tsv", "1\t2\t0.5\n2\t3\tnan\n"),
                                      lambda f: imp(d, "--edges", f"ppi={f}"), ["line 2, column 3", "finite"])),
    "edges_empty": file_case(lambda d: (text(d / "e.tsv", ""), lambda f: imp(d, "--edges", f"ppi={f}"), ["empty"])),
    "edges_header_only": file_case(lambda d: (text(d / "e.tsv", "protein1 protein2 combined_score\n"),
                                       lambda f: imp(d, "--edges", f"ppi={f}"), ["no edges"])),
    "edges_empty_gene_id": file_case(lambda d: (text(d / "e.tsv", "1\t2\n2\t\n"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                         ["line 2", "empty gene id"])),
    "edges_weight_beyond_float32": file_case(lambda d: (text(d / "e.tsv", "1\t2\t1e40\n"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                                 ["line 1, column 3", "float32"])),
    "edges_is_directory": file_case(lambda d: (folder(d / "e.tsv"), lambda f: imp(d, "--edges", f"ppi={f}"),
                                        ["directory"])),
    "edges_unreadable": file_case(lambda d: (unreadable(edges(d / "e.tsv")), lambda f: imp(d, "--edges", f"ppi={f}"),
                                      ["permission denied"])),
    "edges_gz_truncated": file_case(lambda d: (text(d / "e.tsv.gz", gz(d / "x.gz", b"1\t2\n" * 5000).read_bytes()[:40]),
                                        lambda f: imp(d, "--edges", f"ppi={f}"), ["gzip"])),
    "edges_id_map_matches_nothing": file_case(lambda d: (edges(d / "e.tsv"), lambda f: imp(
        d, "--edges", f"ppi={f}", "--id-map", text(d / "map.tsv", "TP53\t7157\nBRCA1\t672\n")), ["id map"])),
    "edges_bad_layer_name": lambda d: (imp(d, "--edges", f"p/pi={edges(d / 'e.tsv')}"), ["--edges", "layer name"]),
    "edges_not_a_pair": lambda d: (imp(d, "--edges", str(edges(d / "e.tsv"))), ["--edges", "NAME=FILE"]),
    "edges_min_score_without_scores": file_case(lambda d: (text(d / "e.tsv", "1\t2\n"), lambda f: imp(
        d, "--edges", f"ppi={f}", "--min-score", "700"), ["--min-score"])),
    # ---- splits
    "split_unknown_name": file_case(lambda d: (text(d / "sp.tsv", "gene_id\tsplit\n1\ttrain\n2\tholdout\n"),
                                        lambda f: sig(d, gctx(d / "s.gctx"), "--split", f"RNAi={f}"),
                                        ["line 3", "'holdout'"])),
    "split_ids_match_nothing": file_case(lambda d: (text(d / "sp.tsv", "gene_id\tsplit\n901\ttrain\n902\tvalid\n"),
                                             lambda f: sig(d, gctx(d / "s.gctx"), "--split", f"RNAi={f}"),
                                             ["only 0 of its 2"])),
    "split_unknown_type": lambda d: (sig(d, gctx(d / "s.gctx"), "--split", f"Drug={split(d / 'sp.tsv')}"),
                                     ["--split Drug", "'Drug'"]),
    "split_one_column": file_case(lambda d: (text(d / "sp.tsv", "1\n2\n"),
                                      lambda f: sig(d, gctx(d / "s.gctx"), "--split", f"RNAi={f}"), ["2 columns"])),
    "split_is_directory": file_case(lambda d: (folder(d / "sp.tsv"),
                                        lambda f: sig(d, gctx(d / "s.gctx"), "--split", f"RNAi={f}"), ["directory"])),
    # ---- gene lists and options
    "genes_match_nothing": file_case(lambda d: (text(d / "genes.txt", "901\n902\n"),
                                         lambda f: sig(d, gctx(d / "s.gctx"), "--genes", f), ["100%", "signatures"])),
    "max_unknown_out_of_range": lambda d: (sig(d, gctx(d / "s.gctx"), "--max-unknown", "1.5"),
                                           ["--max-unknown", "between 0 and 1"]),
    "out_under_a_file": lambda d: (["data", "import", "--out", text(d / "f", "x") / "out", "--signatures",
                                    gctx(d / "s.gctx")], [str(d / "f"), "not a directory"]),
    # ---- org.Hs.eg.sqlite
    "orgdb_not_sqlite": file_case(lambda d: (text(d / "org.Hs.eg.sqlite", "hello\n" * 100), lambda f: orgdb_args(d, f),
                                      ["not an SQLite database"])),
    "orgdb_empty_file": file_case(lambda d: (text(d / "org.Hs.eg.sqlite", b""), lambda f: orgdb_args(d, f),
                                      ["not an SQLite database"])),
    "orgdb_no_tables": file_case(lambda d: (sqlite_empty(d), lambda f: orgdb_args(d, f), ["no table 'genes'"])),
    "orgdb_without_layer_table": file_case(lambda d: (orgdb_without(d, "kegg"), lambda f: orgdb_args(d, f, "go-bp,kegg"),
                                               ["no table 'kegg'"])),
    "orgdb_wrong_columns": file_case(lambda d: (make_db(d / "org.Hs.eg.sqlite", schema={"go_bp": "_id INTEGER, term TEXT"}),
                                         lambda f: orgdb_args(d, f), ["'go_bp'", "columns"])),
    "orgdb_truncated": file_case(lambda d: (text(d / "org.Hs.eg.sqlite", make_db(d / "x.sqlite").read_bytes()[:5000]),
                                     lambda f: orgdb_args(d, f), ["truncated"])),
    "orgdb_unknown_layer": file_case(lambda d: (make_db(d / "org.Hs.eg.sqlite"), lambda f: orgdb_args(d, f, "go-bp,reactome"),
                                         ["'reactome'"])),
    "orgdb_is_directory": file_case(lambda d: (folder(d / "org"), lambda f: orgdb_args(d, f),
                                        ["directory"])),
    "orgdb_unreadable": file_case(lambda d: (unreadable(make_db(d / "org.Hs.eg.sqlite")), lambda f: orgdb_args(d, f),
                                      ["permission denied"])),
    "orgdb_without_location_table": file_case(lambda d: (orgdb_without(d, "chromosome_locations"), lambda f: orgdb_args(d, f),
                                                  ["no table 'chromosome_locations'"])),
    # ---- locations tables
    "locations_start_not_integer": file_case(lambda d: (locations(d, "1\t19\t5.5\tq\n"), lambda f: sig(
        d, gctx(d / "s.gctx"), "--locations", f), ["line 2", "start '5.5'", "integer"])),
    "locations_bad_arm": file_case(lambda d: (locations(d, "1\t19\t5\tq\n2\t3\t7\tcen\n"), lambda f: sig(
        d, gctx(d / "s.gctx"), "--locations", f), ["line 3", "arm 'cen'", "p or q"])),
    "locations_band_elsewhere": file_case(lambda d: (text(d / "loc.csv", "gene_id,chromosome,start,cytoband\n1,19,5,12p13\n"),
                                              lambda f: sig(d, gctx(d / "s.gctx"), "--locations", f),
                                              ["line 2", "'12p13'", "chromosome 19"])),
    "locations_no_arm_column": file_case(lambda d: (text(d / "loc.tsv", "gene_id\tchromosome\tstart\n1\t19\t5\n"),
                                             lambda f: sig(d, gctx(d / "s.gctx"), "--locations", f),
                                             ["line 1", "arm or cytoband"])),
    "locations_ids_match_nothing": file_case(lambda d: (locations(d, "TP53\t17\t7661779\tp\n"), lambda f: sig(
        d, gctx(d / "s.gctx"), "--locations", f), ["none of its 1 gene ids"])),
    "locations_is_directory": file_case(lambda d: (folder(d / "loc.tsv"), lambda f: sig(
        d, gctx(d / "s.gctx"), "--locations", f), ["directory"])),
    # ---- bundles (tnfast data info)
    "info_newer_version": lambda d: (["data", "info", manifest(d, version=99)],
                                     [str(d / "b" / "bundle.json"), "version 99", "upgrade"]),
    "info_missing_directory": lambda d: (["data", "info", d / "nope"], [str(d / "nope"), "not a directory"]),
    "info_file_not_directory": lambda d: (["data", "info", text(d / "b", "x")], [str(d / "b"), "not a directory"]),
    "info_no_manifest": lambda d: (["data", "info", folder(d / "b")], [str(d / "b"), "no bundle.json"]),
    "info_manifest_not_json": lambda d: (["data", "info", (bundle(d / "b"), text(d / "b" / "bundle.json", "{"))[0]],
                                         [str(d / "b" / "bundle.json"), "invalid JSON"]),
    "info_manifest_layers_not_a_list": lambda d: (["data", "info", manifest(d, layers=None)],
                                                  [str(d / "b" / "bundle.json"), "'layers'"]),
    "info_manifest_types_not_a_list": lambda d: (["data", "info", manifest(d, types=3)],
                                                 [str(d / "b" / "bundle.json"), "'types'"]),
    "info_locations_truncated": lambda d: (["data", "info", (located(d / "b"), half(d / "b" / "locations.npz"))[0]],
                                           [str(d / "b" / "locations.npz"), "not a readable .npz"]),
    "info_signatures_truncated": lambda d: (["data", "info", (bundle(d / "b"), half(d / "b" / "signatures" / "RNAi.npz"))[0]],
                                            [str(d / "b" / "signatures" / "RNAi.npz"), "not a readable .npz"]),
    # ---- preds.zarr (tnfast query / tnfast export)
    "query_not_a_store": lambda d: (query(d, not_a_store(d), query_tsv(d)), [str(d / "p.zarr"), "not a Zarr store"]),
    "query_store_missing": lambda d: (query(d, d / "p.zarr", query_tsv(d)), [str(d / "p.zarr"), "not a Zarr store"]),
    "query_newer_store": lambda d: (query(d, store(d / "p.zarr", version=2), query_tsv(d)),
                                    [str(d / "p.zarr"), "version 2", "upgrade"]),
    "query_incomplete_store": lambda d: (query(d, store(d / "p.zarr", complete=False), query_tsv(d)),
                                         [str(d / "p.zarr"), "incomplete"]),
    "query_foreign_zarr": lambda d: (query(d, store_attrs(d, format="other"), query_tsv(d)),
                                     [str(d / "p.zarr"), "not a tnfast predictions store"]),
    "query_corrupt_zarr_json": lambda d: (query(d, (store(d / "p.zarr"), text(d / "p.zarr" / "zarr.json", "{x"))[0],
                                                query_tsv(d)), [str(d / "p.zarr"), "cannot read"]),
    "query_damaged_chunk": lambda d: (query(d, damaged_chunk(d), query_tsv(d)), [str(d / "p.zarr"), "damaged"]),
    "query_missing_chunk": lambda d: (query(d, missing_chunk(d), query_tsv(d)), [str(d / "p.zarr"), "missing"]),
    "query_signature_truncated_gctx": file_case(lambda d: (half(gctx(d / "q.gctx", genes=["1"])),
                                                    lambda f: query(d, store(d / "p.zarr"), f), ["truncated"])),
    "query_signature_nan": file_case(lambda d: (query_tsv(d, "16\t0.5\n23\tnan\n"), lambda f: query(d, store(d / "p.zarr"), f),
                                         ["line 2, column 2", "finite"])),
    "query_signature_ids_match_nothing": file_case(lambda d: (query_tsv(d, "901\t0.5\n902\t0.1\n"),
                                                       lambda f: query(d, store(d / "p.zarr"), f), ["only 0 of"])),
    "query_signature_is_directory": file_case(lambda d: (folder(d / "q.tsv"),
                                                  lambda f: query(d, store(d / "p.zarr"), f), ["directory"])),
    "query_unknown_column": file_case(lambda d: (gctx(d / "q.gctx"), lambda f: query(d, store(d / "p.zarr"), f, "--column", "x"),
                                          ["'x'"])),
    "query_out_is_a_directory": lambda d: (query(d, store(d / "p.zarr"), query_tsv(d))[:-2] + ["--out", d],
                                           [str(d), "directory"]),
    "query_bad_method": lambda d: (query(d, store(d / "p.zarr"), query_tsv(d), "--method", "magic"),
                                   ["--method", "'magic'"]),
    "export_not_a_store": lambda d: (export(d, not_a_store(d)), [str(d / "p.zarr"), "not a Zarr store"]),
    "export_store_is_a_file": lambda d: (export(d, text(d / "p.zarr", "x")), [str(d / "p.zarr"), "not a Zarr store"]),
    "export_newer_store": lambda d: (export(d, store(d / "p.zarr", version=2)), [str(d / "p.zarr"), "version 2"]),
    "export_damaged_chunk": lambda d: (export(d, damaged_chunk(d)), [str(d / "p.zarr"), "damaged"]),
    "export_damaged_chunk_tsv": lambda d: (export(d, damaged_chunk(d), fmt="tsv"), [str(d / "p.zarr"), "damaged"]),
    "export_missing_chunk": lambda d: (export(d, missing_chunk(d)), [str(d / "p.zarr"), "missing"]),
    "export_bad_format": lambda d: (export(d, store(d / "p.zarr"), fmt="csv"), ["--format", "'csv'"]),
    "export_genes_match_nothing": file_case(lambda d: (text(d / "g.txt", "901\n"),
                                                lambda f: export(d, store(d / "p.zarr"), "--genes", f), ["'901'"])),
    "export_types_unknown": lambda d: (export(d, store(d / "p.zarr"), "--types", "RNAi,Drug"), ["--types"]),
}

ROOT_CAN_READ = {k for k in CASES if k.endswith("_unreadable")}


def error_line(stderr: str) -> list[str]:
    """The lines of stderr that are not progress messages ('· ...')."""
    return [x for x in stderr.splitlines() if x.strip() and not x.startswith("· ")]


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".out"))


@pytest.mark.parametrize("case", list(CASES))
def test_catalogue(tmp_path, case):
    if case in ROOT_CAN_READ and AS_ROOT:
        pytest.skip("root reads a chmod 000 file")
    d = tmp_path / "in"
    d.mkdir()
    argv, fragments = CASES[case](d)
    try:
        r = tnfast(*argv, cwd=tmp_path, timeout=120)
    finally:
        for p in d.rglob("*"):  # let pytest clean up the unreadable ones
            p.chmod(0o755)
    lines = error_line(r.stderr)
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and r.stderr.strip().splitlines()[-1] == lines[0], \
        r.stderr
    named, *problem = fragments
    assert named in lines[0], (named, lines[0])
    # The problem must be said in words, not merely appear in a path (test_catalogue_gctx_empty_0/...).
    words = lines[0].replace(str(tmp_path), "<tmp>")
    for frag in problem:
        assert frag in words, (frag, lines[0])
    assert not (d / "out").exists() and leftovers(d) == [], sorted(p.name for p in d.iterdir())


def test_the_baselines_are_valid(tmp_path):
    """The hostile cases are one defect away from inputs that work."""
    d = tmp_path
    r = tnfast(*sig(d, gctx(d / "s.gctx"), "--signatures", tsv_matrix(d / "t.tsv"), "--type", "RNAi",
                    "--features", features(d / "f.tsv"), "--edges", f"ppi={edges(d / 'e.tsv')}",
                    "--split", f"RNAi={split(d / 'sp.tsv')}", "--orgdb", make_db(d / "org.Hs.eg.sqlite"),
                    "--layers", "go-bp,kegg", "--locations", locations(d, "1\t19\t5\tq\n")), cwd=d)
    assert r.returncode == 0, r.stderr
    b = load_bundle(d / "out")
    assert list(b.networks) == ["ppi", "go-bp", "kegg"] and len(b.signatures["RNAi"].gene) == len(GENES)
    assert b.gene_locations.chromosome[0] == "19"
    assert tnfast("data", "info", bundle(d / "b"), cwd=d).returncode == 0
    assert tnfast("data", "info", located(d / "located"), cwd=d).returncode == 0
    s = store(d / "p.zarr")
    r = tnfast("query", "--preds", s, "--signature", query_tsv(d), "--method", "wtcs", "--out", d / "hits.tsv", cwd=d)
    assert r.returncode == 0 and (d / "hits.tsv").is_file(), r.stderr
    for fmt in ("gctx", "tsv"):
        r = tnfast("export", s, "--format", fmt, "--out", d / f"exported.{fmt}", cwd=d)
        assert r.returncode == 0, r.stderr
    r = tnfast("query", "--preds", s, "--signature", gctx(d / "q.gctx", genes=["1"]), cwd=d)
    assert r.returncode == 0, r.stderr


def test_debug_shows_the_traceback(tmp_path):
    f = half(gctx(tmp_path / "s.gctx"))
    r = tnfast("--debug", "data", "import", "--out", tmp_path / "out", "--signatures", f, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- unreadable files, as root too

def test_unreadable_files_are_one_line_errors(tmp_path, monkeypatch):
    """chmod 000 does not stop root, so deny read access to chosen paths the way os.access reports it."""
    from test_orgdb import make_db as orgdb

    from tnfast.data import bundle as bundle_mod
    from tnfast.data.gctx import read_gctx
    from tnfast.data.importer import read_features
    from tnfast.data.orgdb import coannotation_layers
    from tnfast.data.tables import read_rows
    from tnfast.errors import InputError

    denied = set()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.fspath(p) not in denied and real(p, mode, **kw))
    b = bundle(tmp_path / "b")
    np.save(tmp_path / "f.npy", np.zeros((1, 2), np.float32))
    for path, read in [
        (gctx(tmp_path / "s.gctx"), read_gctx),
        (edges(tmp_path / "e.tsv"), read_rows),
        (orgdb(tmp_path / "org.sqlite"), lambda p: coannotation_layers(p, ["go-bp"])),
        (tmp_path / "f.npy", lambda p: read_features(p, text(tmp_path / "g.txt", "1\n"))),
        (b / "genes.tsv", lambda p: bundle_mod.load_bundle(b)),
        (b / "bundle.json", lambda p: bundle_mod.load_bundle(b)),
        (b / "signatures" / "RNAi.npz", lambda p: bundle_mod.load_bundle(b)),
    ]:
        denied.add(str(path))
        with pytest.raises(InputError) as e:
            read(path)
        assert str(e.value) == f"{path}: permission denied (cannot read it)"
        denied.discard(str(path))


# --------------------------------------------------------------------------- nothing unpickles

def test_nothing_unpickles():
    """Every numpy.load passes allow_pickle=False, every torch.load weights_only=True; no pickle module."""
    import ast

    root = Path(__file__).resolve().parents[1]
    checked = 0
    for f in [*(root / "tnfast").rglob("*.py"), *(root / "kernels").rglob("*.py")]:
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "joblib"} & set(names), f"{f}:{node.lineno} imports pickle"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                owner = ast.unparse(node.func.value)
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if owner in ("np", "numpy"):
                    assert kw.get("allow_pickle") == "False", f"{f}:{node.lineno}: np.load without allow_pickle=False"
                    checked += 1
                elif owner == "torch":
                    assert kw.get("weights_only") == "True", f"{f}:{node.lineno}: torch.load without weights_only=True"
                    checked += 1
    assert checked >= 3
