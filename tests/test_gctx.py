"""GCTX reader/writer: real CMap fixtures, round trips, bad files, atomic writes."""

from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tnfast.data import gctx
from tnfast.data.gctx import GCT, read_gctx, write_gctx
from tnfast.errors import InputError

MATRIX = "0/DATA/0/matrix"
ROW_ID = "0/META/ROW/id"
COL_ID = "0/META/COL/id"


def fixture(shared_data, name):
    return shared_data / "gctx-fixtures" / name


def raw(path, name):
    with h5py.File(path, "r") as f:
        return f[name][()]


def assert_same(a: GCT, b: GCT):
    assert a.matrix.dtype == b.matrix.dtype == np.float32
    np.testing.assert_array_equal(a.matrix, b.matrix)  # NaN == NaN here
    for x, y in ((a.row_ids, b.row_ids), (a.col_ids, b.col_ids)):
        assert x.dtype.kind == y.dtype.kind == "U"
        assert x.tolist() == y.tolist()
    for x, y in ((a.row_meta, b.row_meta), (a.col_meta, b.col_meta)):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype.kind == y[k].dtype.kind, k
            np.testing.assert_array_equal(x[k], y[k])


# --------------------------------------------------------------------------- real fixtures

def test_l1000_highprecision(shared_data):
    path = fixture(shared_data, "test_l1000_highprecision.gctx")
    g = read_gctx(path)
    stored = raw(path, MATRIX)
    assert stored.shape == (377, 978)
    assert g.matrix.shape == (978, 377) and g.matrix.dtype == np.float32
    assert g.matrix.flags.c_contiguous
    np.testing.assert_array_equal(g.matrix, stored.T)
    for i, j in ((0, 0), (977, 376), (500, 17), (3, 200)):
        assert g.matrix[i, j] == stored[j, i]
    assert g.matrix[0, 0] == np.float32(0.3473286)
    # |S ids and text metadata come back as clean str
    assert g.row_ids.dtype.kind == "U" and g.col_ids.dtype.kind == "U"
    assert g.row_ids[:3].tolist() == ["200814_at", "218597_s_at", "217140_s_at"]
    assert g.col_ids[0] == "LJP005_A375_24H_X1_B19:A03"
    assert g.row_ids.tolist() == [x.decode() for x in raw(path, ROW_ID)]
    assert g.col_ids.tolist() == [x.decode() for x in raw(path, COL_ID)]
    assert "id" not in g.row_meta and "id" not in g.col_meta
    assert len(g.row_meta) == 11 and len(g.col_meta) == 37
    assert g.row_meta["pr_gene_symbol"][:3].tolist() == ["PSME1", "CISD1", "VDAC1"]
    assert g.row_meta["pr_gene_id"].dtype == np.int64
    assert g.row_meta["pr_gene_id"][:3].tolist() == [5720, 55847, 7416]
    assert g.row_meta["pr_gene_title"][0] == "proteasome (prosome, macropain) activator subunit 1 (PA28 alpha)"
    assert g.col_meta["count_cv"].dtype == np.int64 and g.col_meta["count_cv"][:3].tolist() == [22, 23, 24]
    assert g.col_meta["qc_iqr"].dtype == np.float64
    np.testing.assert_array_equal(g.col_meta["qc_iqr"], raw(path, "0/META/COL/qc_iqr"))
    assert g.col_meta["pert_type"][0] == "ctl_vehicle"
    # '-666' (CMap's missing value) is text in the file and stays text
    assert g.col_meta["pert_dose"].dtype.kind == "U" and g.col_meta["pert_dose"][0] == "-666"
    assert all(len(v) == 377 for v in g.col_meta.values())
    assert all(len(v) == 978 for v in g.row_meta.values())


def test_entrez_int64_row_ids(shared_data):
    path = fixture(shared_data, "test_parse_gctx_rid_entrez_id.gctx")
    assert raw(path, ROW_ID).dtype == np.int64
    g = read_gctx(path)
    assert g.row_ids.dtype.kind == "U"
    assert g.row_ids.tolist() == ["5720", "55847", "7416", "10174", "25803"]
    assert g.col_ids[0] == "REP.A001_A375_24H_X1_B22:A03"
    stored = raw(path, MATRIX)
    np.testing.assert_array_equal(g.matrix, stored.T)
    assert g.matrix[1, 0] == stored[0, 1] == 1270.0
    assert g.matrix[0, 2] == stored[2, 0] == 1069.0
    assert g.row_meta == {} and g.col_meta == {}


def test_mini_mixed_metadata(shared_data):
    path = fixture(shared_data, "mini_gctoo_for_testing.gctx")
    stored = raw(path, MATRIX)
    assert stored.dtype == np.float64  # the one fixture with a float64 matrix
    g = read_gctx(path)
    assert g.matrix.shape == (6, 6) and g.matrix.dtype == np.float32
    np.testing.assert_array_equal(g.matrix, stored.T.astype(np.float32))
    assert g.matrix[3, 4] == np.float32(stored[4, 3])
    assert g.matrix[0, 5] == 6.0 and g.matrix[5, 0] == 1.0 and g.matrix[5, 5] == -6.0
    for meta in (g.row_meta, g.col_meta):  # the file has the same fields on both axes
        assert set(meta) == {"count_cv", "distil_nsample", "distil_ss", "mfc_plate_id", "zmad_ref"}
        assert meta["distil_nsample"].dtype == np.int64
        assert meta["distil_nsample"].tolist() == [3, 3, 66, 2, 9, 111111]
        assert meta["distil_ss"].dtype == np.float64
        np.testing.assert_array_equal(meta["distil_ss"], raw(path, "0/META/COL/distil_ss"))
        assert abs(meta["distil_ss"][0] - 9.822065) < 1e-6
        assert meta["count_cv"].dtype.kind == "U" and meta["count_cv"][0] == "14|15|14"
        assert meta["mfc_plate_id"].tolist() == ["-666"] * 6
        assert meta["zmad_ref"][0] == "population"
    assert g.col_ids[4] == "LJP007_MCF7_24H:CTL_VEHICLE:DMSO:-666"


def test_l1000_example_rnai(shared_data):
    path = shared_data / "l1000-example" / "signatures_RNAi.gctx"
    g = read_gctx(path)
    assert g.matrix.shape == (978, 243)
    assert set(g.col_meta["pert_type"].tolist()) == {"trt_sh"}
    gene = g.col_meta["pert_gene_id"]
    assert gene.dtype.kind == "i"
    assert g.col_ids.tolist() == [f"trt_sh:{x}" for x in gene.tolist()]
    assert g.row_ids.astype(np.int64).tolist() == sorted(g.row_ids.astype(np.int64).tolist())
    assert np.nanmin(g.matrix) >= -1 and np.nanmax(g.matrix) <= 1
    np.testing.assert_array_equal(g.matrix, raw(path, MATRIX).T)


def test_cids_subset_in_given_order(shared_data):
    path = fixture(shared_data, "test_l1000_highprecision.gctx")
    full = read_gctx(path)
    pick = [300, 5, 376, 0, 121, 120, 7]
    g = read_gctx(path, cids=[full.col_ids[i] for i in pick])
    assert g.col_ids.tolist() == full.col_ids[pick].tolist()
    np.testing.assert_array_equal(g.matrix, full.matrix[:, pick])
    assert g.matrix.flags.c_contiguous
    assert g.row_ids.tolist() == full.row_ids.tolist()
    for k, v in full.col_meta.items():
        np.testing.assert_array_equal(g.col_meta[k], v[pick])
    assert read_gctx(path, cids=[]).matrix.shape == (978, 0)


def test_cids_across_slabs(tmp_path, monkeypatch):
    # Tiny slabs exercise the multi-read path that large files take.
    monkeypatch.setattr(gctx, "_SLAB_BYTES", 3 * 4 * 4)
    rng = np.random.default_rng(1)
    g = GCT(rng.standard_normal((4, 50)).astype(np.float32), np.array(list("abcd")),
            np.array([f"c{i}" for i in range(50)]))
    write_gctx(tmp_path / "x.gctx", g)
    pick = rng.permutation(50)[:23]
    sub = read_gctx(tmp_path / "x.gctx", cids=g.col_ids[pick].tolist())
    np.testing.assert_array_equal(sub.matrix, g.matrix[:, pick])


# --------------------------------------------------------------------------- other stored forms

def test_vlen_and_float_ids(tmp_path):
    path = tmp_path / "v.gctx"
    with h5py.File(path, "w") as f:
        f.attrs["version"] = "GCTX1.0"  # variable-length str attribute
        f[MATRIX] = np.arange(6, dtype=np.float64).reshape(2, 3)
        f.create_dataset(ROW_ID, data=[5720.0, 7157.0, 1.0])
        f.create_dataset(COL_ID, data=["s1", "sé2"], dtype=h5py.string_dtype())
        f.create_dataset("0/META/COL/note", data=[b"x", b"yy"], dtype=h5py.string_dtype("ascii"))
    g = read_gctx(path)
    assert g.row_ids.tolist() == ["5720", "7157", "1"]
    assert g.col_ids.tolist() == ["s1", "sé2"]
    assert g.col_meta["note"].tolist() == ["x", "yy"]
    np.testing.assert_array_equal(g.matrix, [[0, 3], [1, 4], [2, 5]])


def test_nan_is_not_an_error(tmp_path):
    g = GCT(np.array([[np.nan, 1.0], [np.inf, -2.5]], np.float32), np.array(["r1", "r2"]), np.array(["c1", "c2"]))
    write_gctx(tmp_path / "n.gctx", g)
    assert_same(read_gctx(tmp_path / "n.gctx"), g)


# --------------------------------------------------------------------------- writing

def synthetic(n_rows=7, n_cols=5, seed=0) -> GCT:
    rng = np.random.default_rng(seed)
    return GCT(
        matrix=rng.standard_normal((n_rows, n_cols)).astype(np.float32),
        row_ids=np.array([str(1000 + 7 * i) for i in range(n_rows)]),
        col_ids=np.array([f"trt_sh:{i}é" for i in range(n_cols)]),
        row_meta={"pr_gene_id": np.arange(n_rows, dtype=np.int64) * 3,
                  "pr_gene_symbol": np.array([f"G{i}" * (i + 1) for i in range(n_rows)])},
        col_meta={"pert_type": np.array(["trt_sh", "trt_oe", "", "trt_xpr", "x"][:n_cols]),
                  "dose": rng.random(n_cols), "ok": np.arange(n_cols) % 2 == 0,
                  "n": np.arange(n_cols, dtype=np.int32)},
    )


def test_round_trip_synthetic(tmp_path):
    g = synthetic()
    path = tmp_path / "s.gctx"
    write_gctx(path, g)
    back = read_gctx(path)
    assert_same(back, g)
    assert back.col_meta["n"].dtype == np.int32 and back.col_meta["ok"].dtype == bool
    # the CMap layout, checked with plain h5py
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == b"GCTX1.0"
        assert f[MATRIX].shape == (5, 7) and f[MATRIX].dtype == np.float32
        np.testing.assert_array_equal(f[MATRIX][()], g.matrix.T)
        assert f[ROW_ID].dtype.kind == "S" and f[COL_ID].dtype.kind == "S"
        assert f["0/META/COL/pert_type"].dtype.kind == "S"
        assert f["0/META/ROW/pr_gene_id"].dtype == np.int64
        assert f["0/META/COL/dose"].dtype == np.float64
        assert f[COL_ID][0].decode() == "trt_sh:0é"
    assert sorted(os.listdir(tmp_path)) == ["s.gctx"]  # no temporary left over


@pytest.mark.parametrize("name", ["test_l1000_highprecision.gctx", "mini_gctoo_for_testing.gctx",
                                  "test_parse_gctx_rid_entrez_id.gctx"])
def test_round_trip_fixture(shared_data, tmp_path, name):
    g = read_gctx(fixture(shared_data, name))
    write_gctx(tmp_path / name, g)
    assert_same(read_gctx(tmp_path / name), g)


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "o.gctx"
    write_gctx(path, synthetic(3, 2))
    write_gctx(path, synthetic(4, 5, seed=2))
    assert_same(read_gctx(path), synthetic(4, 5, seed=2))


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


@st.composite
def gcts(draw):
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 6))
    matrix = draw(hnp.arrays(np.float32, (n_rows, n_cols), elements=st.floats(width=32)))
    row_ids = draw(st.lists(_text, min_size=n_rows, max_size=n_rows, unique=True))
    col_ids = draw(st.lists(_text, min_size=n_cols, max_size=n_cols, unique=True))
    score = draw(hnp.arrays(np.float64, n_cols, elements=st.floats()))
    label = draw(st.lists(_text, min_size=n_rows, max_size=n_rows))
    return GCT(matrix, np.array(row_ids, dtype=str), np.array(col_ids, dtype=str),
               {"label": np.array(label, dtype=str)}, {"score": score})


@settings(max_examples=60, deadline=None)
@given(gcts())
def test_round_trip_property(g):
    # Fixed-length HDF5 strings are NUL-padded, so ids and text exclude NUL (see _text).
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.gctx")
        write_gctx(path, g)
        assert_same(read_gctx(path), g)
        sub = list(reversed(g.col_ids.tolist()))
        back = read_gctx(path, cids=sub)
        np.testing.assert_array_equal(back.matrix, g.matrix[:, ::-1])
        np.testing.assert_array_equal(back.col_meta["score"], g.col_meta["score"][::-1])


@pytest.mark.parametrize("bad, message", [
    (dict(row_ids=np.array(["a", "b"])), "row ids have shape"),
    (dict(col_ids=np.array(["a", "a", "b", "c", "d"])), "duplicate column id 'a'"),
    (dict(col_meta={"x": np.zeros(4)}), "column metadata 'x'"),
    (dict(row_meta={"id": np.zeros(7)}), "bad row metadata field name 'id'"),
    (dict(matrix=np.zeros(3)), "2-D numeric"),
])
def test_write_rejects_invalid_gct(tmp_path, bad, message):
    g = synthetic()
    for k, v in bad.items():
        setattr(g, k, v)
    with pytest.raises(ValueError, match=message):
        write_gctx(tmp_path / "bad.gctx", g)
    assert os.listdir(tmp_path) == []


def test_write_to_bad_paths(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        write_gctx(tmp_path, synthetic())
    with pytest.raises(InputError, match="does not exist"):
        write_gctx(tmp_path / "nope" / "x.gctx", synthetic())


@pytest.mark.parametrize("existing", [False, True])
def test_write_is_atomic(tmp_path, monkeypatch, existing):
    path = tmp_path / "a.gctx"
    if existing:
        write_gctx(path, synthetic(3, 2))
    real_put = gctx._put
    seen = []

    def failing_put(f, name, values):
        real_put(f, name, values)  # the temporary file now holds a matrix and one dataset
        seen.extend(n for n in os.listdir(tmp_path) if n.endswith(".tmp"))
        raise RuntimeError("disk full")

    monkeypatch.setattr(gctx, "_put", failing_put)
    with pytest.raises(RuntimeError, match="disk full"):
        write_gctx(path, synthetic())
    assert seen, "the failure should happen after the temporary file exists"
    assert os.listdir(tmp_path) == (["a.gctx"] if existing else [])
    if existing:
        monkeypatch.undo()
        assert_same(read_gctx(path), synthetic(3, 2))


# --------------------------------------------------------------------------- bad files

def valid_file(path):
    """A correct 3-row x 4-column GCTX written with plain h5py, for the mutations below."""
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        f[MATRIX] = np.arange(12, dtype=np.float32).reshape(4, 3)
        f[ROW_ID] = np.array([b"r1", b"r2", b"r3"])
        f[COL_ID] = np.array([b"c1", b"c2", b"c3", b"c4"])
        f["0/META/ROW/sym"] = np.array([b"A", b"B", b"C"])
        f["0/META/COL/dose"] = np.array([0.1, 0.2, 0.3, 0.4])


def _replace(name, data):
    def mutate(f):
        del f[name]
        f[name] = data
    return mutate


def _delete(name):
    def mutate(f):
        del f[name]
    return mutate


def _drop_version(f):
    del f.attrs["version"]


BAD_FILES = {
    "no version": (_drop_version, "no 'version' attribute"),
    "no matrix": (_delete(MATRIX), "/0/DATA/0/matrix: no data matrix"),
    "1-D matrix": (_replace(MATRIX, np.zeros(12)), "expected a 2-D numeric matrix"),
    "text matrix": (_replace(MATRIX, np.full((4, 3), b"x")), "expected a 2-D numeric matrix"),
    "no row ids": (_delete(ROW_ID), "/0/META/ROW/id: no row ids"),
    "no col ids": (_delete(COL_ID), "/0/META/COL/id: no column ids"),
    "row id count": (_replace(ROW_ID, np.array([b"r1", b"r2"])), "but the matrix has 3 rows"),
    "col id count": (_replace(COL_ID, np.array([b"c1", b"c2", b"c3"])), "but the matrix has 4 columns"),
    "untransposed": (_replace(MATRIX, np.zeros((3, 4), np.float32)), "but the matrix has 4 rows"),
    "dup row id": (_replace(ROW_ID, np.array([b"r1", b"r2", b"r1"])), "duplicate row id 'r1'"),
    "dup col id": (_replace(COL_ID, np.array([b"c1", b"c9", b"c9", b"c1"])), "duplicate column id 'c1' (2 ids repeated)"),
    "short row meta": (_replace("0/META/ROW/sym", np.array([b"A", b"B"])),
                       "/0/META/ROW/sym: metadata field has shape (2,), expected (3,)"),
    "long col meta": (_replace("0/META/COL/dose", np.zeros(5)),
                      "/0/META/COL/dose: metadata field has shape (5,), expected (4,)"),
    "meta group": (lambda f: f.create_group("0/META/COL/extra"), "/0/META/COL/extra: expected a metadata dataset"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file(tmp_path, case):
    mutate, message = BAD_FILES[case]
    path = tmp_path / "bad.gctx"
    valid_file(path)
    read_gctx(path)  # the unmutated file is fine
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(InputError) as err:
        read_gctx(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_not_hdf5(tmp_path):
    path = tmp_path / "x.gctx"
    path.write_text("id\tc1\nr1\t1.0\n")
    with pytest.raises(InputError, match="not a readable HDF5/GCTX file") as err:
        read_gctx(path)
    assert str(path) in str(err.value)


def test_truncated(shared_data, tmp_path):
    path = tmp_path / "t.gctx"
    path.write_bytes(fixture(shared_data, "test_l1000_highprecision.gctx").read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated") as err:
        read_gctx(path)
    assert str(path) in str(err.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory") as err:
        read_gctx(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(InputError, match="no such file"):
        read_gctx(tmp_path / "absent.gctx")


def test_unknown_and_repeated_cids(tmp_path):
    path = tmp_path / "c.gctx"
    valid_file(path)
    with pytest.raises(InputError) as err:
        read_gctx(path, cids=["c2", "zz9", "c1"])
    assert str(err.value) == f"{path}: /0/META/COL/id: column id 'zz9' not in the file"
    with pytest.raises(InputError, match="2 requested ids are missing"):
        read_gctx(path, cids=["x", "y"])
    with pytest.raises(InputError, match="column id 'c2' requested more than once"):
        read_gctx(path, cids=["c2", "c1", "c2"])
    with pytest.raises(TypeError):
        read_gctx(path, cids="c1")
