"""`import_bundle` on the shared real L1000 data and on small hand-made files.

Oracles are independent of the importer: the raw GCTX datasets read with h5py, the TSV files
read with csv/numpy, and hand-computed expectations for the small files.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tnfast.data.bundle import SPLITS, TYPES, load_bundle
from tnfast.data.gctx import GCT, read_gctx, write_gctx
from tnfast.data.importer import import_bundle, parse_type, read_signature_file
from tnfast.errors import InputError

EXAMPLE = "l1000-example"
CODE = {"RNAi": "trt_sh", "CRISPR": "trt_xpr", "OE": "trt_oe"}
COUNTS = {"RNAi": 243, "CRISPR": 302, "OE": 181}
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as conftest.shared_data
LM = ["16", "23", "25", "30", "39"]  # five landmark ids for the small hand-made files


# --------------------------------------------------------------------------- helpers

def raw_gctx(path):
    """Straight from HDF5: (matrix as stored (n_sig, L), row ids, col ids, pert_type, pert_gene_id)."""
    with h5py.File(path, "r") as f:
        return (f["0/DATA/0/matrix"][()],
                np.char.decode(f["0/META/ROW/id"][()], "utf-8"),
                np.char.decode(f["0/META/COL/id"][()], "utf-8"),
                np.char.decode(f["0/META/COL/pert_type"][()], "utf-8"),
                f["0/META/COL/pert_gene_id"][()])


def split_file(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["gene_id", "split"]
    return {g: s for g, s in rows[1:]}


def feature_table(path):
    with gzip.open(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        ids, vals = [], []
        for line in f:
            parts = line.rstrip("\n").split("\t")
            ids.append(parts[0])
            vals.append([float(x) for x in parts[1:]])
    return header, ids, np.array(vals, dtype=np.float64)


def example_sources(shared_data):
    d = shared_data / EXAMPLE
    return dict(signatures=[str(d / f"signatures_{t}.gctx") for t in TYPES],
                features=str(d / "features.tsv.gz"),
                splits={t: str(d / f"split_{t}.tsv") for t in TYPES})


def make_gctx(path, cols, landmarks=LM, values=None, gene_field="pert_gene_id", extra=None, seed=0):
    """cols: [(col id, pert_type, gene)]; values (L, n_cols) or random."""
    n = len(cols)
    if values is None:
        values = np.random.default_rng(seed).uniform(-1, 1, (len(landmarks), n)).astype(np.float32)
    col_meta = {"pert_type": np.array([c[1] for c in cols]),
                gene_field: np.array([int(c[2]) for c in cols], dtype=np.int64)}
    col_meta.update(extra or {})
    write_gctx(path, GCT(np.asarray(values, np.float32), np.array(landmarks), np.array([c[0] for c in cols]),
                         {}, col_meta))
    return str(path)


def write(path, text):
    path.write_text(text)
    return str(path)


def csr_edges(csr, genes):
    """{(gene a, gene b): weight} for every stored (directed) entry."""
    out = {}
    for i in range(csr.n):
        for k in range(csr.indptr[i], csr.indptr[i + 1]):
            out[(genes[i], genes[csr.indices[k]])] = float(csr.weights[k])
    return out


def check_csr_invariants(csr, n):
    assert csr.indptr.dtype == np.int64 and csr.indices.dtype == np.int32 and csr.weights.dtype == np.float32
    assert csr.indptr.shape == (n + 1,) and csr.indptr[0] == 0 and csr.indptr[-1] == len(csr.indices)
    assert (np.diff(csr.indptr) >= 0).all()
    assert len(csr.weights) == len(csr.indices) and (csr.weights > 0).all()
    for i in range(n):
        row = csr.indices[csr.indptr[i]:csr.indptr[i + 1]]
        assert (np.diff(row) > 0).all(), "row neighbours sorted and unique"
        assert i not in row, "no self-loops"
    m = csr.to_scipy()
    assert (m != m.T).nnz == 0, "symmetric with equal weights"


def no_leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def example_bundle(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    out = tmp_path_factory.mktemp("ex") / "bundle"
    import_bundle(out, **example_sources(SHARED))
    return load_bundle(out)


def test_example_genes_and_landmarks(example_bundle, shared_data):
    b = example_bundle
    d = shared_data / EXAMPLE
    named = set()
    for t in TYPES:
        _, rows, _, _, gene = raw_gctx(d / f"signatures_{t}.gctx")
        named |= {str(int(x)) for x in gene}
        # Every file lists the same 978 landmarks in the same order: the bundle keeps that order.
        assert rows.tolist() == b.landmarks.tolist()
    _, fids, _ = feature_table(d / "features.tsv.gz")
    named |= set(fids)
    assert len(b.landmarks) == 978
    assert b.n_genes == 584 == len(named)
    assert set(b.genes.tolist()) == named
    assert len(set(b.genes.tolist())) == b.n_genes
    assert b.networks == {}
    assert set(b.meta["source"]) >= set(example_sources(shared_data)["signatures"])


@pytest.mark.parametrize("t", TYPES)
def test_example_signatures_equal_raw_matrix(example_bundle, shared_data, t):
    b = example_bundle
    matrix, rows, cols, ptype, gene = raw_gctx(shared_data / EXAMPLE / f"signatures_{t}.gctx")
    s = b.signatures[t]
    assert len(s.gene) == COUNTS[t] == matrix.shape[0]
    assert set(ptype.tolist()) == {CODE[t]}
    assert len(np.unique(gene)) == len(gene)  # one signature per gene: no averaging here
    assert len(np.unique(s.gene)) == len(s.gene)
    genes = b.genes
    row_of = {genes[g]: i for i, g in enumerate(s.gene.tolist())}
    assert set(row_of) == {str(int(x)) for x in gene}
    assert s.values.shape == (COUNTS[t], 978) and s.values.dtype == np.float32
    # The stored matrix is (signatures, landmarks): the bundle row of gene g is the stored row.
    for j in [0, 1, len(gene) // 2, len(gene) - 1]:
        np.testing.assert_array_equal(s.values[row_of[str(int(gene[j]))]], matrix[j])
    for j in range(len(gene)):
        assert np.array_equal(s.values[row_of[str(int(gene[j]))]], matrix[j])


@pytest.mark.parametrize("t", TYPES)
def test_example_splits_equal_the_files(example_bundle, shared_data, t):
    s = example_bundle.signatures[t]
    given = split_file(shared_data / EXAMPLE / f"split_{t}.tsv")
    got = {example_bundle.genes[g]: str(x) for g, x in zip(s.gene.tolist(), s.split.tolist())}
    assert got == given


def test_example_split_files_conflict_across_types_and_are_honoured(example_bundle, shared_data):
    given = {t: split_file(shared_data / EXAMPLE / f"split_{t}.tsv") for t in TYPES}
    conflicts = 0
    b = example_bundle
    got = {t: {b.genes[g]: x for g, x in zip(b.signatures[t].gene.tolist(), b.signatures[t].split.tolist())}
           for t in TYPES}
    for i, a in enumerate(TYPES):
        for c in TYPES[i + 1:]:
            for g in set(given[a]) & set(given[c]):
                if given[a][g] != given[c][g]:
                    conflicts += 1
                    assert got[a][g] == given[a][g] and got[c][g] == given[c][g]
    assert conflicts >= 36  # the data says so; honoured per type, not "fixed"


def test_example_features_equal_the_table(example_bundle, shared_data):
    header, ids, vals = feature_table(shared_data / EXAMPLE / "features.tsv.gz")
    f = example_bundle.features
    assert header[0] == "gene_id"
    assert f.names.tolist() == header[1:] and len(header) == 513
    assert f.values.shape == (584, 512) and f.present.all()
    idx = example_bundle.gene_index()
    rows = np.array([idx[g] for g in ids])
    np.testing.assert_array_equal(f.values[rows], vals.astype(np.float32))


def test_example_default_splits_are_gene_disjoint(tmp_path, shared_data):
    src = example_sources(shared_data)
    del src["splits"]
    runs = {}
    for seed in (0, 0, 1):
        out = tmp_path / f"b{len(runs)}"
        import_bundle(out, seed=seed, **src)
        b = load_bundle(out)
        by_gene = {}
        for t, s in b.signatures.items():
            for g, x in zip(s.gene.tolist(), s.split.tolist()):
                by_gene.setdefault(g, set()).add(x)
        assert all(len(v) == 1 for v in by_gene.values()), "a gene sits in one split in all types"
        split_of = {g: v.pop() for g, v in by_gene.items()}
        n = len(split_of)
        assert n == 505  # distinct measured genes over the three files
        counts = {s: sum(v == s for v in split_of.values()) for s in SPLITS}
        assert counts == {"train": 404, "valid": 50, "test": 51}  # round(0.8 n), round(0.9 n)
        runs[len(runs)] = split_of
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_example_with_edge_layer(tmp_path, shared_data):
    src = example_sources(shared_data)
    # 95 and 291 are measured genes; 9000001/9000002 are new and must join the universe.
    edges = write(tmp_path / "ppi.tsv", "# a tiny layer\ngene1\tgene2\tscore\n95\t291\t0.5\n291\t95\t0.9\n"
                  "95\t9000001\t2\n9000001\t9000002\t1\n9000002\t9000002\t3\n")
    out = tmp_path / "b"
    import_bundle(out, edges={"ppi": edges}, **src)
    b = load_bundle(out)
    assert b.n_genes == 586 and {"9000001", "9000002"} <= set(b.genes.tolist())
    assert b.genes.tolist() == sorted(b.genes.tolist(), key=int)
    csr = b.networks["ppi"]
    check_csr_invariants(csr, b.n_genes)
    got = csr_edges(csr, b.genes.tolist())
    want = {("95", "291"): float(np.float32(0.9)), ("95", "9000001"): 2.0, ("9000001", "9000002"): 1.0}
    want.update({(c, a): w for (a, c), w in want.items()})
    assert got == want
    idx = b.gene_index()
    assert not b.features.present[idx["9000001"]] and not b.features.values[idx["9000001"]].any()
    assert b.features.present.sum() == 584
    # signatures and splits unchanged by the new genes
    for t in TYPES:
        assert len(b.signatures[t].gene) == COUNTS[t]


# --------------------------------------------------------------------------- small files

def test_pert_type_codes_and_skipped_columns(tmp_path):
    cols = [("a", "trt_sh", 1), ("b", "trt_xpr", 2), ("c", "trt_oe", 3), ("d", "trt_cp", 4),
            ("e", "ctl_vehicle", 5), ("f", "trt_sh", 6)]
    vals = np.arange(5 * 6, dtype=np.float32).reshape(5, 6) / 10
    vals[0, 3] = np.nan  # NaN in a compound column that is skipped is not an error
    f = make_gctx(tmp_path / "s.gctx", cols, values=vals)
    parts = {t: (g.tolist(), v) for t, g, lm, v in read_signature_file(f)}
    assert set(parts) == {"RNAi", "CRISPR", "OE"}
    assert parts["RNAi"][0] == ["1", "6"] and parts["CRISPR"][0] == ["2"] and parts["OE"][0] == ["3"]
    np.testing.assert_array_equal(parts["RNAi"][1], vals[:, [0, 5]].T)
    out = tmp_path / "b"
    import_bundle(out, signatures=[f])
    b = load_bundle(out)
    assert b.genes.tolist() == ["1", "2", "3", "6"]  # compound and control genes are not in the universe
    assert b.landmarks.tolist() == LM
    np.testing.assert_array_equal(b.signatures["OE"].values, vals[:, [2]].T)
    for t, code in CODE.items():
        assert parse_type(code, "x") == t
        assert parse_type(t.lower(), "x") == t and parse_type(t.upper(), "x") == t
    with pytest.raises(InputError, match="unknown perturbation type"):
        parse_type("trt_cp", "--type")


def test_only_non_genetic_columns_is_an_error(tmp_path):
    f = make_gctx(tmp_path / "cp.gctx", [("a", "trt_cp", 1), ("b", "ctl_vehicle", 2)])
    with pytest.raises(InputError, match="no genetic perturbation") as e:
        import_bundle(tmp_path / "b", signatures=[f])
    assert str(e.value).startswith(f)


def test_several_signatures_of_one_gene_and_type_are_averaged(tmp_path):
    cols = [("sh:7:a", "trt_sh", 7), ("sh:7:b", "trt_sh", 7), ("sh:8", "trt_sh", 8), ("oe:7", "trt_oe", 7)]
    vals = np.array([[1, 3, 5, 9], [2, 2, 6, 8], [0, 1, 7, 7], [-1, -3, 8, 6], [4, 0, 9, 5]], np.float32)
    f1 = make_gctx(tmp_path / "a.gctx", cols, values=vals)
    # A second file with another RNAi signature of gene 7, its landmarks in another order.
    perm = [4, 2, 0, 1, 3]
    v2 = np.array([[10], [20], [30], [40], [50]], np.float32)
    f2 = make_gctx(tmp_path / "b.gctx", [("x", "trt_sh", 7)], landmarks=[LM[i] for i in perm], values=v2)
    out = tmp_path / "b"
    import_bundle(out, signatures=[f1, f2])
    b = load_bundle(out)
    assert b.landmarks.tolist() == LM  # first file's order
    s = b.signatures["RNAi"]
    genes = b.genes[s.gene].tolist()
    assert sorted(genes) == ["7", "8"]
    v2_in_lm_order = np.empty(5, np.float32)
    v2_in_lm_order[perm] = v2[:, 0]
    expect7 = (vals[:, 0] + vals[:, 1] + v2_in_lm_order) / 3
    np.testing.assert_allclose(s.values[genes.index("7")], expect7, rtol=1e-6)
    np.testing.assert_array_equal(s.values[genes.index("8")], vals[:, 2])
    o = b.signatures["OE"]
    assert b.genes[o.gene].tolist() == ["7"]
    np.testing.assert_array_equal(o.values[0], vals[:, 3])  # not averaged with RNAi


def test_gene_field_option(tmp_path):
    cols = [("a", "trt_sh", 11), ("b", "trt_sh", 12)]
    f = make_gctx(tmp_path / "s.gctx", cols, gene_field="entrez",
                  extra={"pert_gene_id": np.array([901, 902], dtype=np.int64)})
    import_bundle(tmp_path / "b1", signatures=[f], gene_field="entrez")
    assert load_bundle(tmp_path / "b1").genes.tolist() == ["11", "12"]
    import_bundle(tmp_path / "b2", signatures=[f])
    assert load_bundle(tmp_path / "b2").genes.tolist() == ["901", "902"]
    with pytest.raises(InputError, match="--gene-field") as e:
        import_bundle(tmp_path / "b3", signatures=[f], gene_field="nope")
    assert str(e.value).startswith(f) and "'nope'" in str(e.value)
    assert not (tmp_path / "b3").exists()


def test_typed_file_overrides_metadata_for_gctx_and_type_option_does_not(tmp_path):
    f = make_gctx(tmp_path / "s.gctx", [("a", "trt_sh", 1), ("b", "trt_sh", 2)])
    import_bundle(tmp_path / "b", signatures=[f"CRISPR={f}"])
    assert list(load_bundle(tmp_path / "b").signatures) == ["CRISPR"]
    import_bundle(tmp_path / "c", signatures=[f], sig_type="CRISPR")  # only for files without pert_type
    assert list(load_bundle(tmp_path / "c").signatures) == ["RNAi"]


@pytest.mark.parametrize("sep, name", [("\t", "sig.tsv"), (",", "sig.csv"), ("\t", "sig.tsv.gz")])
def test_tsv_signature_matrix_with_type(tmp_path, sep, name):
    lm = ["23", "16", "30"]
    rows = [("5", [0.5, -1, 0.25]), ("3", [1, 2, 3]), ("5", [1.5, 1, 0.75])]
    text = sep.join(["gene_id", *lm]) + "\n" + "".join(sep.join([g, *map(str, v)]) + "\n" for g, v in rows)
    p = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(p, "wt") as h:
            h.write(text)
    else:
        p.write_text(text)
    import_bundle(tmp_path / "b", signatures=[str(p)], sig_type="OE")
    b = load_bundle(tmp_path / "b")
    assert b.landmarks.tolist() == lm
    s = b.signatures["OE"]
    assert list(b.signatures) == ["OE"]
    got = dict(zip(b.genes[s.gene].tolist(), s.values.tolist()))
    assert got == {"3": [1, 2, 3], "5": [1.0, 0.0, 0.5]}  # two rows of gene 5 averaged
    with pytest.raises(InputError, match="needs --type") as e:
        import_bundle(tmp_path / "b2", signatures=[str(p)])
    assert str(e.value).startswith(str(p))
    assert not (tmp_path / "b2").exists()


def test_tsv_and_gctx_signatures_combine_in_landmark_order(tmp_path):
    g = make_gctx(tmp_path / "s.gctx", [("a", "trt_sh", 1)], values=np.arange(5, dtype=np.float32)[:, None])
    t = write(tmp_path / "x.tsv", "gene\t39\t30\t25\t23\t16\n2\t4\t3\t2\t1\t0\n")
    import_bundle(tmp_path / "b", signatures=[g, t], sig_type="RNAi")
    b = load_bundle(tmp_path / "b")
    s = b.signatures["RNAi"]
    assert dict(zip(b.genes[s.gene].tolist(), s.values.tolist())) == {"1": [0, 1, 2, 3, 4], "2": [0, 1, 2, 3, 4]}


def test_features_npy_with_gene_list_and_csv(tmp_path):
    vals = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    np.save(tmp_path / "f.npy", vals)
    ids = write(tmp_path / "ids.txt", "30\n4\n100\n")
    import_bundle(tmp_path / "b", features=str(tmp_path / "f.npy"), feature_genes=ids)
    b = load_bundle(tmp_path / "b")
    assert b.genes.tolist() == ["4", "30", "100"]
    np.testing.assert_array_equal(b.features.values, vals[[1, 0, 2]])
    assert b.features.names.tolist() == ["f0", "f1"]
    # CSV with gene_id not the first column
    c = write(tmp_path / "f.csv", "a,gene_id,b\n1.5,7,2\n-1,3,0\n")
    import_bundle(tmp_path / "c", features=c)
    b = load_bundle(tmp_path / "c")
    assert b.genes.tolist() == ["3", "7"] and b.features.names.tolist() == ["a", "b"]
    np.testing.assert_array_equal(b.features.values, [[-1, 0], [1.5, 2]])


def test_genes_file_restricts_the_universe(tmp_path, shared_data):
    src = example_sources(shared_data)
    _, ids, _ = feature_table(shared_data / EXAMPLE / "features.tsv.gz")
    keep = sorted(ids, key=int)[:500]  # drops 84 of 584 genes (14% < 20%)
    gfile = write(tmp_path / "genes.txt", "gene_id\n" + "\n".join(keep) + "\n")
    out = tmp_path / "b"
    import_bundle(out, signatures=src["signatures"], features=src["features"], genes=gfile)
    b = load_bundle(out)
    assert b.genes.tolist() == keep
    for t in TYPES:
        _, _, _, _, gene = raw_gctx(shared_data / EXAMPLE / f"signatures_{t}.gctx")
        want = {str(int(x)) for x in gene} & set(keep)
        assert set(b.genes[b.signatures[t].gene].tolist()) == want
    assert b.features.present.all()
    # Too many ids outside the list: an error naming the genes file, and nothing written.
    small = write(tmp_path / "few.txt", "\n".join(keep[:100]) + "\n")
    with pytest.raises(InputError, match="not in this list") as e:
        import_bundle(tmp_path / "c", signatures=src["signatures"], genes=small)
    assert str(e.value).startswith(small)
    assert not (tmp_path / "c").exists()
    # ... unless the threshold allows it
    import_bundle(tmp_path / "d", signatures=src["signatures"], genes=small, max_unknown=0.95)
    assert load_bundle(tmp_path / "d").n_genes == 100


def test_split_file_aliases_and_propagation(tmp_path):
    cols = [(f"sh{g}", "trt_sh", g) for g in range(1, 41)] + [(f"oe{g}", "trt_oe", g) for g in range(1, 41)]
    f = make_gctx(tmp_path / "s.gctx", cols)
    sp = write(tmp_path / "split.tsv", "1\tTraining\n2\tval\n3\ttest\n")  # no header
    import_bundle(tmp_path / "b", signatures=[f], splits={"trt_sh": sp}, seed=3)
    b = load_bundle(tmp_path / "b")
    for t in ("RNAi", "OE"):
        s = b.signatures[t]
        got = dict(zip(b.genes[s.gene].tolist(), s.split.tolist()))
        # given for RNAi, carried over to OE, where no file says otherwise
        assert (got["1"], got["2"], got["3"]) == ("train", "valid", "test")
    r, o = b.signatures["RNAi"], b.signatures["OE"]
    assert r.gene.tolist() == o.gene.tolist() and r.split.tolist() == o.split.tolist()


def test_nothing_to_import(tmp_path):
    with pytest.raises(InputError, match="nothing to import"):
        import_bundle(tmp_path / "b")
    with pytest.raises(InputError, match="nothing to import.*--orgdb with --layers"):  # locations alone name no genes
        import_bundle(tmp_path / "b", orgdb=tmp_path / "org.Hs.eg.sqlite", layers=())


# --------------------------------------------------------------------------- bad input

def _copy(shared_data, tmp_path, t="RNAi"):
    dst = tmp_path / f"copy_{t}.gctx"
    shutil.copyfile(shared_data / EXAMPLE / f"signatures_{t}.gctx", dst)
    dst.chmod(0o644)
    return str(dst)


def case_gctx_no_version(tmp, shared):
    f = _copy(shared, tmp)
    with h5py.File(f, "a") as h:
        del h.attrs["version"]
    return f, dict(signatures=[f]), ["version", "/"]


def case_gctx_no_matrix(tmp, shared):
    f = _copy(shared, tmp)
    with h5py.File(f, "a") as h:
        del h["0/DATA/0/matrix"]
    return f, dict(signatures=[f]), ["/0/DATA/0/matrix"]


def case_gctx_truncated(tmp, shared):
    f = tmp / "trunc.gctx"
    f.write_bytes((shared / EXAMPLE / "signatures_RNAi.gctx").read_bytes()[:2000])
    return str(f), dict(signatures=[str(f)]), ["truncated"]


def case_gctx_not_hdf5(tmp, shared):
    f = write(tmp / "text.gctx", "gene\t1\n")
    return f, dict(signatures=[f]), ["not a readable HDF5"]


def case_signature_nan(tmp, shared):
    v = np.ones((5, 3), np.float32)
    v[2, 1] = np.nan
    f = make_gctx(tmp / "nan.gctx", [("sh:1", "trt_sh", 1), ("sh:2", "trt_sh", 2), ("sh:3", "trt_sh", 3)], values=v)
    return f, dict(signatures=[f]), ["column sh:2", "NaN"]


def case_signature_landmarks_differ(tmp, shared):
    a = make_gctx(tmp / "a.gctx", [("a", "trt_sh", 1)])
    b = make_gctx(tmp / "b.gctx", [("b", "trt_oe", 1)], landmarks=LM[:4] + ["99"])
    return b, dict(signatures=[a, b]), ["landmark", "a.gctx", "'99'"]


def case_signature_real_files_landmarks_differ(tmp, shared):
    f = _copy(shared, tmp, "OE")
    with h5py.File(f, "a") as h:
        ids = h["0/META/ROW/id"][()]
        ids[5] = b"999999"
        h["0/META/ROW/id"][...] = ids
    first = str(shared / EXAMPLE / "signatures_RNAi.gctx")
    return f, dict(signatures=[first, f]), ["landmark", "999999"]


def case_tsv_signature_not_numeric(tmp, shared):
    f = write(tmp / "s.tsv", "gene_id\t16\t23\n1\t0.5\t0.1\n2\t0.2\tabc\n")
    return f, dict(signatures=[f], sig_type="RNAi"), ["line 3, column 23", "expected a number"]


def case_tsv_signature_wrong_columns(tmp, shared):
    f = write(tmp / "s.tsv", "gene_id\t16\t23\n1\t0.5\t0.1\n2\t0.2\n")
    return f, dict(signatures=[f], sig_type="RNAi"), ["line 3", "expected 3 columns"]


def case_gctx_no_pert_type_and_no_type(tmp, shared):
    f = tmp / "nt.gctx"
    write_gctx(f, GCT(np.zeros((5, 1), np.float32), np.array(LM), np.array(["c"]), {},
                      {"pert_gene_id": np.array([1])}))
    return str(f), dict(signatures=[str(f)]), ["pert_type", "--type"]


def case_features_not_numeric(tmp, shared):
    f = write(tmp / "feat.tsv", "gene_id\tf0\tf1\n1\t0.5\t0.1\n2\t0.2\tx\n")
    return f, dict(features=f), ["line 3, column f1", "expected a number"]


def case_features_gz_not_numeric(tmp, shared):
    f = tmp / "feat.tsv.gz"
    with gzip.open(f, "wt") as h:
        h.write("gene_id\tf0\n1\t0.5\n2\tnan\n")
    return str(f), dict(features=str(f)), ["line 3, column f0"]


def case_features_gz_truncated(tmp, shared):
    f = tmp / "features.tsv.gz"
    f.write_bytes((shared / EXAMPLE / "features.tsv.gz").read_bytes()[:2000])
    return str(f), dict(features=str(f)), ["cannot read"]


def case_gctx_ids_do_not_match_matrix(tmp, shared):
    f = _copy(shared, tmp)
    with h5py.File(f, "a") as h:
        ids = h["0/META/COL/id"][()]
        del h["0/META/COL/id"]
        h["0/META/COL/id"] = ids[:-1]
    return f, dict(signatures=[f]), ["/0/META/COL/id", "242"]


def case_features_duplicate_ids(tmp, shared):
    f = write(tmp / "feat.tsv", "gene_id\tf0\n1\t0.5\n2\t0.2\n1\t0.3\n")
    return f, dict(features=f), ["lines 2 and 4", "duplicate"]


def case_features_npy_wrong_rows(tmp, shared):
    np.save(tmp / "f.npy", np.zeros((3, 2), np.float32))
    ids = write(tmp / "ids.txt", "1\n2\n")
    return str(tmp / "f.npy"), dict(features=str(tmp / "f.npy"), feature_genes=ids), ["expected shape (2, F)"]


def case_features_npy_text(tmp, shared):
    np.save(tmp / "f.npy", np.array([["a", "b"], ["c", "d"]]))
    ids = write(tmp / "ids.txt", "1\n2\n")
    return str(tmp / "f.npy"), dict(features=str(tmp / "f.npy"), feature_genes=ids), ["numeric"]


def case_features_npy_is_npz(tmp, shared):
    with open(tmp / "f.npy", "wb") as fh:  # np.savez into a file named .npy
        np.savez(fh, values=np.zeros((2, 2), np.float32))
    ids = write(tmp / "ids.txt", "1\n2\n")
    return str(tmp / "f.npy"), dict(features=str(tmp / "f.npy"), feature_genes=ids), [".npz archive"]


def case_features_npy_nan(tmp, shared):
    a = np.zeros((2, 2), np.float32)
    a[1, 0] = np.nan
    np.save(tmp / "f.npy", a)
    ids = write(tmp / "ids.txt", "1\n2\n")
    return str(tmp / "f.npy"), dict(features=str(tmp / "f.npy"), feature_genes=ids), ["row 1"]


def _sig(tmp):
    return make_gctx(tmp / "sig.gctx", [(f"sh{g}", "trt_sh", g) for g in (1, 2, 3, 4, 5)])


def case_split_unknown_value(tmp, shared):
    f = write(tmp / "split.tsv", "gene_id\tsplit\n1\ttrain\n2\ttrian\n")
    return f, dict(signatures=[_sig(tmp)], splits={"RNAi": f}), ["line 3", "'trian'"]


def case_split_unknown_value_first_line_without_header(tmp, shared):
    f = write(tmp / "split.tsv", "1\ttrian\n2\ttrain\n")
    return f, dict(signatures=[_sig(tmp)], splits={"RNAi": f}), ["line 1", "'trian'"]


def case_split_duplicate_gene(tmp, shared):
    f = write(tmp / "split.tsv", "gene_id\tsplit\n1\ttrain\n1\tvalid\n")
    return f, dict(signatures=[_sig(tmp)], splits={"RNAi": f}), ["line 3", "duplicate"]


def case_split_type_not_imported(tmp, shared):
    f = write(tmp / "split.tsv", "gene_id\tsplit\n1\ttrain\n")
    return f, dict(signatures=[_sig(tmp)], splits={"OE": f}), ["OE"]


def case_split_genes_not_measured(tmp, shared):
    f = write(tmp / "split.tsv", "gene_id\tsplit\n1\ttrain\n70\ttrain\n71\ttrain\n72\ttrain\n")
    return f, dict(signatures=[_sig(tmp)], splits={"RNAi": f}), ["only 1 of its 4"]


def case_edges_empty(tmp, shared):
    f = write(tmp / "e.tsv", "# nothing here\n\n")
    return f, dict(signatures=[_sig(tmp)], edges={"ppi": f}), ["empty"]


def case_edges_only_self_loops(tmp, shared):
    f = write(tmp / "e.tsv", "1\t1\n2\t2\n")
    return f, dict(signatures=[_sig(tmp)], edges={"ppi": f}), ["layer ppi", "self-loops"]


def case_edges_wrong_columns(tmp, shared):
    f = write(tmp / "e.tsv", "1\t2\t0.5\t7\n")
    return f, dict(signatures=[_sig(tmp)], edges={"ppi": f}), ["line 1", "2 or 3 columns"]


def case_edges_bad_weight(tmp, shared):
    f = write(tmp / "e.tsv", "1\t2\t0.5\n2\t3\tNaN\n")
    return f, dict(signatures=[_sig(tmp)], edges={"ppi": f}), ["line 2, column 3"]


def case_genes_file_unknown_ids(tmp, shared):
    g = write(tmp / "genes.txt", "1\n")
    return g, dict(signatures=[_sig(tmp)], genes=g), ["80%", "signatures"]


def case_genes_file_duplicate(tmp, shared):
    g = write(tmp / "genes.txt", "1\n2\n1\n")
    return g, dict(signatures=[_sig(tmp)], genes=g), ["lines 1 and 3"]


def case_out_exists(tmp, shared):
    out = tmp.parent / "out"  # the output path test_bad_input uses
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return str(out), dict(signatures=[_sig(tmp)]), ["already exists", "--overwrite"]


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input(tmp_path, shared_data, case):
    src = tmp_path / "src"
    src.mkdir()
    where, kwargs, expect = case(src, shared_data)
    out = tmp_path / "out"
    existed = out.exists()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as e:
        import_bundle(out, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(where + ":"), msg
    assert e.value.where == where
    for word in expect:
        assert word in msg, (word, msg)
    # Nothing written: no output, no temporary sibling left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert no_leftovers(tmp_path) == []
    if existed:
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """A crash while the bundle is written (here: disk full on the signatures) leaves no trace."""
    f = _sig(tmp_path)
    import tnfast.data.bundle as bundle_mod

    real = np.savez

    def boom(path, **arrays):
        if "split" in arrays:
            raise OSError(28, "No space left on device")
        return real(path, **arrays)

    monkeypatch.setattr(bundle_mod.np, "savez", boom)
    with pytest.raises(OSError):
        import_bundle(tmp_path / "out", signatures=[f], features=None)
    assert not (tmp_path / "out").exists()
    assert no_leftovers(tmp_path) == []


def test_probe_keyed_gctx_uses_pr_gene_id_as_landmark_ids(shared_data, tmp_path):
    """test_l1000_highprecision.gctx keys rows by Affymetrix probe; Entrez ids are in pr_gene_id."""
    src = shared_data / "gctx-fixtures" / "test_l1000_highprecision.gctx"
    with h5py.File(src, "r") as f:
        entrez = [str(x) for x in f["0/META/ROW/pr_gene_id"][:]]
    g = read_gctx(src)
    n_cols = len(g.col_ids)
    g.col_meta["pert_gene_id"] = np.arange(n_cols, dtype=np.int64)  # one gene per column
    write_gctx(tmp_path / "probe.gctx", g)
    [(t, genes, landmarks, values)] = read_signature_file(tmp_path / "probe.gctx", ptype="RNAi")
    assert t == "RNAi" and landmarks.tolist() == entrez and genes.tolist() == [str(i) for i in range(n_cols)]
    np.testing.assert_array_equal(values, g.matrix.T)


def test_consensus_shrna_code_is_rnai(tmp_path):
    g = GCT(matrix=np.arange(6, dtype=np.float32).reshape(3, 2), row_ids=np.array(["1", "2", "3"]),
            col_ids=np.array(["a", "b"]),
            col_meta={"pert_type": np.array(["trt_sh.cgs", "trt_sh.css"]), "pert_gene_id": np.array([7, 8])})
    write_gctx(tmp_path / "c.gctx", g)
    [(t, genes, _, values)] = read_signature_file(tmp_path / "c.gctx")
    assert t == "RNAi" and genes.tolist() == ["7"]  # the seed-sequence signature (css) is not a gene's
    np.testing.assert_array_equal(values, [[0, 2, 4]])


def test_l1000_example_with_orgdb_networks_through_the_cli(shared_data, tmp_path):
    """The real example plus co-annotation layers from a tiny org.Hs.eg.sqlite, via `tnfast data import`."""
    from conftest import tnfast
    from test_orgdb import make_db

    from tnfast.data.orgdb import coannotation_layers

    db = make_db(tmp_path / "org.Hs.eg.sqlite")
    ex = shared_data / "l1000-example"
    args = ["data", "import", "--out", str(tmp_path / "b"), "--features", str(ex / "features.tsv.gz"),
            "--orgdb", str(db), "--layers", "go-bp,kegg"]
    for t in TYPES:
        args += ["--signatures", str(ex / f"signatures_{t}.gctx"), "--split", f"{t}={ex / f'split_{t}.tsv'}"]
    r = tnfast(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "go-bp" in r.stdout and "kegg" in r.stdout
    b = load_bundle(tmp_path / "b")
    assert list(b.networks) == ["go-bp", "kegg"]
    expected = coannotation_layers(db, ["go-bp", "kegg"])
    with gzip.open(ex / "features.tsv.gz", "rt") as f:
        feature_genes = {line.split("\t", 1)[0] for line in f.read().splitlines()[1:]}
    network_genes = {x for el in expected.values() for x in el.genes.tolist()}
    assert set(b.genes.tolist()) == feature_genes | network_genes
    index = b.gene_index()
    for name, el in expected.items():
        dense = b.networks[name].to_scipy().toarray()
        want = np.zeros_like(dense)
        for s, d, w in zip(el.src, el.dst, el.weight):
            i, j = index[el.genes[s]], index[el.genes[d]]
            want[i, j] = want[j, i] = w
        np.testing.assert_array_equal(dense, want)
    assert {t: len(s.gene) for t, s in b.signatures.items()} == {"RNAi": 243, "CRISPR": 302, "OE": 181}
