"""Delimited tables and edge lists: real-world variants and bad input, each one clear line."""

import gzip

import numpy as np
import pytest

from tnfast.data.csr import build_csr
from tnfast.data.edges import read_edge_list, read_id_map
from tnfast.data.tables import read_id_list, read_matrix
from tnfast.errors import InputError


def write(path, text):
    path.write_text(text)
    return path


def edges_as_set(el):
    return {(el.genes[s], el.genes[d], float(w)) for s, d, w in zip(el.src, el.dst, el.weight)}


def test_two_column_tsv_with_comments_and_header(tmp_path):
    f = write(tmp_path / "e.tsv", "# exported\nsource\ttarget\n1\t2\n2\t3\n\n# trailing comment\n")
    assert edges_as_set(read_edge_list(f)) == {("1", "2", 1.0), ("2", "3", 1.0)}


def test_three_column_csv_without_header(tmp_path):
    f = write(tmp_path / "e.csv", "10,20,0.5\n20,30,2\n")
    assert edges_as_set(read_edge_list(f)) == {("10", "20", 0.5), ("20", "30", 2.0)}


def test_string_style_with_min_score_and_id_map(tmp_path):
    f = write(tmp_path / "string.txt", "protein1 protein2 combined_score\n"
              "9606.ENSP1 9606.ENSP2 900\n9606.ENSP1 9606.ENSP3 400\n9606.ENSP2 9606.ENSP3 750\n")
    m = write(tmp_path / "map.tsv", "string_id\tgene_id\n9606.ENSP1\t7157\n9606.ENSP2\t672\n9606.ENSP3\t675\n")
    el = read_edge_list(f, read_id_map(m), min_score=700)
    assert edges_as_set(el) == {("7157", "672", 900.0), ("672", "675", 750.0)}


def test_gzipped_edges(tmp_path):
    f = tmp_path / "e.tsv.gz"
    with gzip.open(f, "wt") as h:
        h.write("A\tB\t1\nB\tC\t3\n")
    assert edges_as_set(read_edge_list(f)) == {("A", "B", 1.0), ("B", "C", 3.0)}


@pytest.mark.parametrize("text, where, what", [
    ("1\t2\n3\t4\t5\n", "line 2", "expected 2 columns"),
    ("1\t2\tx\n3\t4\t5\n", "line 2", "expected a number"),  # first line read as header, then 'x' is fine; line 2 ok
    ("1\t2\t1\n3\t4\tabc\n", "line 2, column 3", "expected a number"),
    ("1\t2\t1\n3\t4\tnan\n", "line 2, column 3", "expected a finite number"),
    ("1\t2\t1\n3\t4\t-1\n", "line 2", "must be > 0"),
    ("1\t2\t3\t4\n", "line 1", "expected 2 or 3 columns"),
    ("# only a comment\n", "", "is empty"),
    ("1\n2\n", "line 1", "at least 2 columns"),
])
def test_bad_edge_lists(tmp_path, text, where, what):
    f = write(tmp_path / "bad.tsv", text)
    if text.startswith("1\t2\tx"):  # a header line then a valid edge: no error
        assert edges_as_set(read_edge_list(f)) == {("3", "4", 5.0)}
        return
    with pytest.raises(InputError) as e:
        read_edge_list(f)
    msg = str(e.value)
    assert msg.startswith(str(f)) and where in msg and what in msg
    assert "\n" not in msg


def test_id_map_that_matches_nothing_is_an_error(tmp_path):
    f = write(tmp_path / "e.tsv", "TP53\tMDM2\nTP53\tBRCA1\n")
    m = write(tmp_path / "map.tsv", "EGFR\t1956\n")
    with pytest.raises(InputError, match="missing from the id map"):
        read_edge_list(f, read_id_map(m))


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_edge_list(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_edge_list(tmp_path / "nope.tsv")


def test_binary_file_is_rejected(tmp_path):
    f = tmp_path / "e.tsv"
    f.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_edge_list(f)


def test_read_matrix_and_errors(tmp_path):
    f = write(tmp_path / "m.tsv", "gene_id\ta\tb\n7\t1\t2\n8\t3\t4.5\n")
    ids, cols, vals = read_matrix(f)
    assert ids.tolist() == ["7", "8"] and cols == ["a", "b"]
    np.testing.assert_array_equal(vals, [[1, 2], [3, 4.5]])
    dup = write(tmp_path / "d.tsv", "gene_id\ta\n7\t1\n8\t2\n7\t3\n")
    with pytest.raises(InputError, match=r"lines 2 and 4: duplicate id '7'"):
        read_matrix(dup)
    noheader = write(tmp_path / "n.tsv", "7\t1\t2\n8\t3\t4\n")
    with pytest.raises(InputError, match="expected a header"):
        read_matrix(noheader)
    only_header = write(tmp_path / "h.tsv", "gene_id\ta\n")
    with pytest.raises(InputError, match="no data lines"):
        read_matrix(only_header)
    wrong_id = write(tmp_path / "w.tsv", "a\tb\n1\t2\n")
    with pytest.raises(InputError, match="no column 'gene_id'"):
        read_matrix(wrong_id, id_column="gene_id")


def test_read_id_list(tmp_path):
    assert read_id_list(write(tmp_path / "a.txt", "1\n2\n3\n")).tolist() == ["1", "2", "3"]
    assert read_id_list(write(tmp_path / "b.tsv", "x\tgene_id\na\t5\nb\t6\n")).tolist() == ["5", "6"]
    with pytest.raises(InputError, match="duplicate gene id '2'"):
        read_id_list(write(tmp_path / "c.txt", "1\n2\n2\n"))


def test_build_csr_invariants():
    # duplicates in both directions keep the largest weight; self-loops vanish
    c = build_csr(np.array([0, 1, 1, 2, 3, 3]), np.array([1, 0, 1, 3, 2, 0]), 5,
                  np.array([1, 4, 9, 2, 3, 5], np.float32))
    dense = c.to_scipy().toarray()
    expected = np.zeros((5, 5), np.float32)
    expected[0, 1] = expected[1, 0] = 4
    expected[2, 3] = expected[3, 2] = 3
    expected[0, 3] = expected[3, 0] = 5
    np.testing.assert_array_equal(dense, expected)
    assert c.indices.dtype == np.int32 and c.indptr.dtype == np.int64 and c.weights.dtype == np.float32
    assert c.degrees().tolist() == [2, 1, 1, 2, 0]
    for i in range(c.n):  # sorted rows
        row = c.indices[c.indptr[i]:c.indptr[i + 1]]
        assert (np.diff(row) > 0).all()
