"""Property tests of the readers that take users' files: GCTX, edge lists, TSV matrices.

Valid inputs round-trip exactly; arbitrary bytes either parse or raise InputError, never any
other exception. Each property is bounded (max_examples) so the file runs in seconds.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tnfast.data.edges import _HEADER_WORDS as HEADER_WORDS
from tnfast.data.edges import read_edge_list
from tnfast.data.gctx import GCT, read_gctx, write_gctx
from tnfast.data.tables import read_matrix
from tnfast.errors import InputError

BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="tnfast-props-") as d:
        yield Path(d)


# --------------------------------------------------------------------------- GCTX round trip

# Any text an id can hold: HDF5 fixed-length strings end at the first NUL, and UTF-8 cannot
# encode lone surrogates; everything else (spaces, accents, emoji, '' ...) must come back as is.
ID_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
FLOAT32 = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                     np.finfo(np.float32).tiny, -np.finfo(np.float32).smallest_subnormal, 1e30, -1e-30]),
)


def _landmark_sized(draw, n_cols):
    """A 978-row GCT (the L1000 readout, past one HDF5 chunk) whose bulk comes from a drawn seed.

    Drawing 978 x 9 floats and 978 unique ids element by element exceeds Hypothesis's entropy
    budget; a seeded matrix with drawn special values scattered in, and ids made unique by their
    row number, keep the size and the awkward values at a fraction of the draws.
    """
    n_rows = 978
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    matrix = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    for flat, value in draw(st.lists(st.tuples(st.integers(0, n_rows * n_cols - 1), FLOAT32), max_size=8)):
        matrix.flat[flat] = value
    if draw(st.booleans()):
        prefix = draw(ID_TEXT)
        row_ids = np.array([f"{prefix}{i}" for i in range(n_rows)], dtype=str)
    else:
        row_ids = draw(st.integers(-2**62, 2**62 - n_rows)) + np.arange(n_rows, dtype=np.int64)
    symbols = draw(st.lists(ID_TEXT, min_size=1, max_size=4))
    row_symbols = np.array([symbols[i % len(symbols)] for i in range(n_rows)], dtype=str)
    return matrix, row_ids, row_symbols


@st.composite
def gcts(draw):
    n_cols = draw(st.integers(1, 9))
    if draw(st.integers(0, 4)) == 0:
        matrix, row_ids, row_symbols = _landmark_sized(draw, n_cols)
    else:
        n_rows = draw(st.integers(1, 12))
        if draw(st.booleans()):
            row_ids = np.array(draw(st.lists(ID_TEXT, min_size=n_rows, max_size=n_rows, unique=True)), dtype=str)
        else:  # integer ids, as in GEO files: they come back as their decimal text
            row_ids = np.array(draw(st.lists(st.integers(-2**62, 2**62), min_size=n_rows, max_size=n_rows,
                                             unique=True)), dtype=np.int64)
        matrix = draw(arrays(np.float32, (n_rows, n_cols), elements=FLOAT32))
        row_symbols = np.array(draw(st.lists(ID_TEXT, min_size=n_rows, max_size=n_rows)), dtype=str)
    col_ids = np.array(draw(st.lists(ID_TEXT, min_size=n_cols, max_size=n_cols, unique=True)), dtype=str)
    col_meta = {
        "pert_type": np.array(draw(st.lists(ID_TEXT, min_size=n_cols, max_size=n_cols)), dtype=str),
        "pert_gene_id": np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n_cols,
                                               max_size=n_cols)), dtype=np.int64),
        "dose": draw(arrays(np.float64, (n_cols,), elements=st.floats(allow_nan=False))),
    }
    return GCT(matrix, row_ids, col_ids, {"pr_gene_symbol": row_symbols}, col_meta)


@BOUNDED
@given(g=gcts(), data=st.data())
def test_gctx_round_trip(scratch, g, data):
    path = scratch / "round.gctx"
    write_gctx(path, g)
    back = read_gctx(path)
    # Bit for bit: -0.0 keeps its sign, NaN its payload, extremes their value.
    np.testing.assert_array_equal(back.matrix.view(np.uint32), g.matrix.view(np.uint32))
    assert back.matrix.dtype == np.float32 and back.matrix.shape == g.matrix.shape
    assert back.row_ids.tolist() == g.row_ids.astype(str).tolist()
    assert back.col_ids.tolist() == g.col_ids.tolist()
    assert set(back.col_meta) == set(g.col_meta) and set(back.row_meta) == set(g.row_meta)
    for k, v in g.col_meta.items():
        assert back.col_meta[k].tolist() == v.tolist(), k
    assert back.row_meta["pr_gene_symbol"].tolist() == g.row_meta["pr_gene_symbol"].tolist()
    # A column subset, in any order, is those columns.
    n = len(g.col_ids)
    pick = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    sub = read_gctx(path, cids=g.col_ids[pick].tolist())
    np.testing.assert_array_equal(sub.matrix.view(np.uint32), g.matrix[:, pick].view(np.uint32))
    assert sub.col_ids.tolist() == g.col_ids[pick].tolist()
    assert sub.col_meta["pert_gene_id"].tolist() == g.col_meta["pert_gene_id"][pick].tolist()


@pytest.fixture(scope="module")
def good_gctx(scratch):
    path = scratch / "good.gctx"
    write_gctx(path, GCT(np.arange(30, dtype=np.float32).reshape(10, 3), np.arange(10).astype(str),
                         np.array(["a", "b", "c"]), {}, {"pert_type": np.array(["trt_sh"] * 3)}))
    return path


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=2048), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                                                         max_size=8))
def test_gctx_reader_on_garbage(scratch, good_gctx, blob, cut, flips):
    """Random bytes, a valid GCTX cut anywhere, or one with bytes flipped: it parses or is an InputError."""
    path = scratch / "garbage.gctx"
    path.write_bytes(blob)
    _parses_or_input_error(read_gctx, path)
    good = good_gctx.read_bytes()
    path.write_bytes(good[:int(cut * len(good))])
    _parses_or_input_error(read_gctx, path)
    raw = bytearray(good)
    for where, mask in flips:
        raw[int(where * (len(raw) - 1))] ^= mask
    path.write_bytes(bytes(raw))
    _parses_or_input_error(read_gctx, path)


# --------------------------------------------------------------------------- edge lists

GENE = st.one_of(st.integers(1, 10**9).map(str), st.from_regex(r"\A[A-Z][A-Z0-9]{0,6}\Z"))
WEIGHT = st.floats(float(np.float32(1e-30)), float(np.float32(1e30)), width=32)


@st.composite
def edge_files(draw):
    edges = draw(st.lists(st.tuples(GENE, GENE, WEIGHT), min_size=1, max_size=40))
    weighted = draw(st.booleans())
    style = draw(st.sampled_from(["tsv", "csv", "space", "gz"]))
    sep = {"tsv": "\t", "csv": ",", "space": " ", "gz": "\t"}[style]
    lines = []
    if draw(st.booleans()):
        lines.append("# a comment line")
    if draw(st.booleans()):
        lines.append(sep.join(["protein1", "protein2", "combined_score"][: 3 if weighted else 2]))
    for a, b, w in edges:
        lines.append(sep.join([a, b, repr(float(w))] if weighted else [a, b]))
        if draw(st.integers(0, 9)) == 0:
            lines.append("")  # blank lines are skipped
    return edges, weighted, style, "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


@BOUNDED
@given(f=edge_files())
def test_edge_list_round_trip(scratch, f):
    edges, weighted, style, content = f
    assume(not {edges[0][0].lower(), edges[0][1].lower()} <= HEADER_WORDS)  # that line is a header
    path = scratch / {"tsv": "e.tsv", "csv": "e.csv", "space": "e.txt", "gz": "e.tsv.gz"}[style]
    if style == "gz":
        with gzip.open(path, "wt") as fh:
            fh.write(content)
    else:
        path.write_text(content, newline="")
    el = read_edge_list(path)
    assert len(el.src) == len(el.dst) == len(el.weight) == len(edges)
    assert el.genes.tolist() == sorted({x for a, b, _ in edges for x in (a, b)})
    got = [(el.genes[s], el.genes[d], w) for s, d, w in zip(el.src, el.dst, el.weight)]
    want = [(a, b, np.float32(w) if weighted else np.float32(1)) for a, b, w in edges]
    assert got == want
    assert el.weight.dtype == np.float32 and (el.weight > 0).all()


GARBAGE_TEXT = st.text(alphabet="12ab#\t ,\n\r\".-eE_x9\u00e9\u00a0", max_size=300)


def _garbage_file(scratch: Path, kind: str, blob: bytes) -> Path:
    path = scratch / f"garbage.{kind}"
    if kind == "tsv.gz":  # whole, or cut short
        gz = gzip.compress(blob)
        blob = gz if len(blob) % 2 else gz[: len(gz) // 2]
    path.write_bytes(blob)
    return path


def _parses_or_input_error(read, *args):
    try:
        read(*args)
    except InputError as e:
        assert "\n" not in str(e) and str(e)
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(blob=st.one_of(st.binary(max_size=300), GARBAGE_TEXT.map(lambda s: s.encode())),
       kind=st.sampled_from(["tsv", "csv", "txt", "tsv.gz"]), min_score=st.sampled_from([None, 0.5]))
def test_edge_list_reader_on_garbage(scratch, blob, kind, min_score):
    path = _garbage_file(scratch, kind, blob)
    if _parses_or_input_error(read_edge_list, path, None, min_score):
        el = read_edge_list(path, None, min_score)
        assert (el.weight > 0).all() and np.isfinite(el.weight).all()
        assert (el.genes != "").all()


# --------------------------------------------------------------------------- TSV signature matrices

@st.composite
def matrices(draw):
    n_cols = draw(st.integers(1, 12))
    header = draw(st.lists(st.integers(1, 10**6).map(str), min_size=n_cols, max_size=n_cols, unique=True))
    n = draw(st.integers(1, 15))
    ids = draw(st.lists(GENE, min_size=n, max_size=n))
    values = draw(arrays(np.float32, (n, n_cols), elements=st.floats(width=32, allow_nan=False,
                                                                     allow_infinity=False)))
    return ids, header, values


@BOUNDED
@given(m=matrices(), sep=st.sampled_from(["\t", ","]))
def test_tsv_matrix_round_trip(scratch, m, sep):
    ids, header, values = m
    path = scratch / ("m.csv" if sep == "," else "m.tsv")
    lines = [sep.join(["gene_id", *header])]
    lines += [sep.join([g, *(repr(float(v)) for v in row)]) for g, row in zip(ids, values)]
    path.write_text("\n".join(lines) + "\n")
    got_ids, got_header, got = read_matrix(path, unique=False)
    assert got_ids.tolist() == ids and got_header == header
    np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32))  # -0.0 included


@settings(max_examples=150, deadline=None)
@given(blob=st.one_of(st.binary(max_size=300), GARBAGE_TEXT.map(lambda s: ("gene_id\t1\t2\n" + s).encode()),
                      GARBAGE_TEXT.map(lambda s: s.encode())),
       kind=st.sampled_from(["tsv", "csv", "tsv.gz"]))
def test_tsv_matrix_reader_on_garbage(scratch, blob, kind):
    path = _garbage_file(scratch, kind, blob)
    if _parses_or_input_error(read_matrix, path):
        ids, header, values = read_matrix(path)
        assume(len(ids))
        assert values.shape == (len(ids), len(header)) and np.isfinite(values).all()
        assert (ids != "").all()
