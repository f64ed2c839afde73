"""Co-annotation layers from org.Hs.eg.sqlite, on a tiny hand-made database with its schema."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tnfast.data import orgdb
from tnfast.data.orgdb import LAYERS, coannotation_layers
from tnfast.errors import InputError

# Table definitions as in org.Hs.eg.db 3.16 (foreign keys and comments left out).
SCHEMA = {
    "genes": "_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE",
    "go_bp": "_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL",
    "go_mf": "_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL",
    "go_cc": "_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL",
    "kegg": "_id INTEGER NOT NULL, path_id CHAR(5) NOT NULL",
    "pfam": "_id INTEGER NOT NULL, ipi_id CHAR(11), pfam_id CHAR(7) NULL",
    "cytogenetic_locations": "_id INTEGER NOT NULL, cytogenetic_location VARCHAR(20) NOT NULL",
    "chromosome_locations": "_id INTEGER NOT NULL, seqname VARCHAR(20) NOT NULL, start_location INTEGER NOT NULL, "
                            "end_location INTEGER NOT NULL",
}

# _id -> Entrez id; ids chosen so that numeric and string order differ. _id 8 has no
# annotation; _id 99 (annotated below) is not a gene at all.
GENES = {1: "1", 2: "10", 3: "100", 4: "2", 5: "9", 6: "1000", 7: "7", 8: "55"}

ROWS = {
    "go_bp": [
        # A: genes 1,2,3 (gene 1 twice, by two evidence codes: still one member)
        (1, "GO:A", "IDA"), (1, "GO:A", "IEA"), (2, "GO:A", "IMP"), (3, "GO:A", "IDA"),
        (2, "GO:B", "IDA"), (3, "GO:B", "TAS"),  # B: genes 2,3
        (4, "GO:C", "IDA"),  # C: one gene, no pair
        # D: five genes, gene 1 only by IEA
        (1, "GO:D", "IEA"), (4, "GO:D", "IDA"), (5, "GO:D", "IDA"), (6, "GO:D", "IDA"),
        (7, "GO:D", "IDA"),
        (5, "GO:E", "IEA"), (6, "GO:E", "IEA"), (7, "GO:E", "IDA"),  # E: 3 genes, 2 by IEA
    ],
    "go_mf": [(1, "GO:M", "IDA"), (2, "GO:M", "IEA"), (99, "GO:M", "IDA")],
    "go_cc": [(3, "GO:K", "IDA"), (4, "GO:K", "HDA"), (5, "GO:K", "IDA")],
    "kegg": [(1, "04110"), (2, "04110"), (3, "04110"), (4, "04110"), (3, "00010"), (4, "00010")],
    "pfam": [
        (1, "IPI00000001", "PF00001"), (1, "IPI00000002", "PF00001"),
        (2, "IPI00000003", "PF00001"),
        (3, "IPI00000004", None), (4, "IPI00000005", None),
    ],
    "cytogenetic_locations": [
        (1, "6p21.3"), (2, "6p21.3 alternate reference locus"), (3, "6p21.3"),
        (4, "1p"), (5, "12p13.31"), (7, "2cen-q13"),  # 7: a centromere range, no arm
    ],
    # as org.Hs.eg.db has them: minus-strand genes negative, alt-contig rows, genes on two
    # chromosomes; 6 is mitochondrial ("M"), 8 has no location, 99 is no gene
    "chromosome_locations": [
        (1, "6", 31_000_000, 31_010_000),
        (2, "6_GL000251v2_alt", 3_934_020, 3_947_089), (2, "6", -32_000_100, -32_000_000),
        (3, "6", -33_000_500, -33_000_000),
        (4, "1", 1_000, 2_000),
        (5, "X", 155_881_344, 155_943_769), (5, "12", 9_067_707, 9_115_919),  # its band says 12
        (6, "M", -7_443, -7_514),
        (7, "2", 100, 200),
        (99, "3", 5, 6),
    ],
}


def make_db(path: Path, skip: tuple[str, ...] = (), schema: dict | None = None) -> Path:
    schema = {**SCHEMA, **(schema or {})}
    conn = sqlite3.connect(path)
    with conn:
        for table, cols in schema.items():
            if table in skip:
                continue
            conn.execute(f"CREATE TABLE {table} ({cols})")
            rows = list(GENES.items()) if table == "genes" else ROWS[table]
            width = len(cols.split(","))
            rows = [r[:width] for r in rows]
            conn.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * width)})", rows)
    conn.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "org.Hs.eg.sqlite")


def g(i: int) -> str:
    return GENES[i]


def as_dict(layer) -> dict[frozenset, float]:
    """{frozenset of two Entrez ids: weight}; also checks the EdgeList invariants."""
    assert layer.src.dtype == np.int64 and layer.dst.dtype == np.int64
    assert layer.weight.dtype == np.float32 and (layer.weight > 0).all()
    assert len(set(layer.genes)) == len(layer.genes)
    assert (layer.src < layer.dst).all()  # one entry per unordered pair, no self-loops
    pairs = {
        frozenset((layer.genes[s], layer.genes[d])): float(w)
        for s, d, w in zip(layer.src, layer.dst, layer.weight)
    }
    assert len(pairs) == len(layer.src)
    # every listed gene has an edge
    assert set(layer.genes) == {x for p in pairs for x in p}
    return pairs


def edges(*items) -> dict[frozenset, float]:
    return {frozenset((g(a), g(b))): w for a, b, w in items}


def check(layer, expected: dict[frozenset, float]) -> None:
    got = as_dict(layer)
    assert got.keys() == expected.keys()
    for k, w in expected.items():
        assert got[k] == pytest.approx(w, rel=1e-6), k


# --- edges and weights, one layer type at a time -------------------------------------------


def test_go_bp_weights(db):
    # A (size 3): 1/2 per pair; B (size 2): 1; D (size 5): 1/4; E (size 3): 1/2; C: none.
    q = 0.25
    check(
        coannotation_layers(db, ["go-bp"])["go-bp"],
        edges(
            (1, 2, 0.5), (1, 3, 0.5), (2, 3, 1.5),
            (1, 4, q), (1, 5, q), (1, 6, q), (1, 7, q), (4, 5, q), (4, 6, q), (4, 7, q),
            (5, 6, q + 0.5), (5, 7, q + 0.5), (6, 7, q + 0.5),
        ),
    )


def test_term_size_bounds(db):
    # max 4 drops D (5 genes), so gene 4 (else only in the single-gene C) drops out.
    layer = coannotation_layers(db, ["go-bp"], max_term_size=4)["go-bp"]
    half = [(5, 6, 0.5), (5, 7, 0.5), (6, 7, 0.5)]
    check(layer, edges((1, 2, 0.5), (1, 3, 0.5), (2, 3, 1.5), *half))
    assert g(4) not in layer.genes
    # min 3 drops B (2 genes) as well.
    layer = coannotation_layers(db, ["go-bp"], max_term_size=4, min_term_size=3)["go-bp"]
    check(layer, edges((1, 2, 0.5), (1, 3, 0.5), (2, 3, 0.5), *half))


def test_exclude_evidence(db):
    # Without IEA: A keeps gene 1 (also IDA), D loses gene 1 (size 4: 1/3), E keeps only gene 7.
    t = 1 / 3
    layer = coannotation_layers(db, ["go-bp"], exclude_evidence=["iea"])["go-bp"]
    check(
        layer,
        edges(
            (1, 2, 0.5), (1, 3, 0.5), (2, 3, 1.5),
            (4, 5, t), (4, 6, t), (4, 7, t), (5, 6, t), (5, 7, t), (6, 7, t),
        ),
    )
    # Not a GO layer: the option does not apply.
    kegg = coannotation_layers(db, ["kegg"], exclude_evidence=["IEA"])["kegg"]
    assert len(kegg.src) == 6


def test_go_mf_and_go_cc(db):
    # GO:M has gene 1 and 2; the row of _id 99 (not in genes) is ignored, so size 2.
    out = coannotation_layers(db, ["go-mf", "go-cc"])
    check(out["go-mf"], edges((1, 2, 1.0)))
    check(out["go-cc"], edges((3, 4, 0.5), (3, 5, 0.5), (4, 5, 0.5)))


def test_kegg(db):
    t = 1 / 3  # 04110 has 4 genes; 00010 (genes 3, 4) adds 1
    check(
        coannotation_layers(db, ["kegg"])["kegg"],
        edges((1, 2, t), (1, 3, t), (1, 4, t), (2, 3, t), (2, 4, t), (3, 4, t + 1)),
    )


def test_pfam_counts_genes_not_proteins_and_skips_null(db):
    # PF00001: gene 1 through two IPI proteins + gene 2 = 2 genes. NULL pfam ids link nothing.
    check(coannotation_layers(db, ["pfam"])["pfam"], edges((1, 2, 1.0)))


def test_cytoband_merges_alternate_loci(db):
    check(
        coannotation_layers(db, ["cytoband"])["cytoband"],
        edges((1, 2, 0.5), (1, 3, 0.5), (2, 3, 0.5)),
    )


def test_all_layers_in_request_order_with_progress(db):
    messages: list[str] = []
    wanted = ["kegg", "go-bp", "kegg", "pfam", "cytoband", "go-cc", "go-mf"]
    out = coannotation_layers(db, wanted, progress=messages.append)
    assert list(out) == ["kegg", "go-bp", "pfam", "cytoband", "go-cc", "go-mf"]
    assert set(out) == set(LAYERS)
    assert len(messages) == len(out)
    for name, msg in zip(out, messages):
        assert msg.startswith(f"{name}:") and "\n" not in msg
        assert f"{len(out[name].src):,} edges" in msg


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 5)), max_size=40),
    st.integers(2, 4),
    st.integers(0, 4),
)
def test_matches_pairwise_definition(pairs, lo, extra):
    hi = lo + extra
    pairs = sorted(set(pairs))
    genes = np.array([f"g{a}" for a, _ in pairs], dtype=str)
    terms = np.array([f"t{b}" for _, b in pairs], dtype=str)
    members: dict[str, set[str]] = {}
    for gene, term in zip(genes, terms):
        members.setdefault(term, set()).add(gene)
    expected: dict[frozenset, float] = {}
    for m in members.values():
        if lo <= len(m) <= hi:
            for a in m:
                for b in m:
                    if a < b:
                        key = frozenset((a, b))
                        expected[key] = expected.get(key, 0.0) + 1 / (len(m) - 1)
    layer = orgdb._coannotation(genes, terms, lo, hi)
    if not expected:
        assert len(layer.src) == 0 and len(layer.genes) == 0
        return
    got = as_dict(layer)
    assert got.keys() == expected.keys()
    for k, w in expected.items():
        assert got[k] == pytest.approx(w, rel=1e-6)


# --- read-only ----------------------------------------------------------------------------


def test_database_is_not_modified(db):
    before = db.read_bytes()
    old = os.stat(db).st_mtime_ns - 10_000_000_000
    os.utime(db, ns=(old, old))
    listing = sorted(p.name for p in db.parent.iterdir())
    coannotation_layers(db, LAYERS)
    coannotation_layers(db, ["go-bp"], exclude_evidence=["IEA"])
    assert db.read_bytes() == before
    assert os.stat(db).st_mtime_ns == old
    assert sorted(p.name for p in db.parent.iterdir()) == listing  # no journal left behind


def test_opened_read_only(db, monkeypatch):
    calls = []
    real_connect = sqlite3.connect

    def spy(database, *args, **kwargs):
        calls.append((database, kwargs.get("uri")))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(orgdb.sqlite3, "connect", spy)
    coannotation_layers(db, ["kegg"])
    assert calls and all(uri and str(d).endswith("?mode=ro") for d, uri in calls)
    monkeypatch.undo()
    conn = orgdb._connect(db)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("CREATE TABLE x (a)")
    conn.close()


def test_path_with_uri_special_characters(tmp_path):
    path = make_db(tmp_path / "odd name #1 ?x=%20.sqlite")
    check(coannotation_layers(path, ["go-mf"])["go-mf"], edges((1, 2, 1.0)))


# --- errors: one specific line, InputError ------------------------------------------------


def error(path, layers=("go-bp",), **kw) -> str:
    with pytest.raises(InputError) as info:
        coannotation_layers(path, list(layers), **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_missing_file(tmp_path):
    assert "no such file" in error(tmp_path / "nope.sqlite")


def test_directory(tmp_path):
    assert "is a directory" in error(tmp_path)


@pytest.mark.parametrize("content", [b"", b"gene_id\tgo_id\n1\tGO:1\n" * 20, b"\x00" * 4096])
def test_not_sqlite(tmp_path, content):
    path = tmp_path / "org.Hs.eg.sqlite"
    path.write_bytes(content)
    assert "not an SQLite database" in error(path)


def test_truncated(db):
    data = db.read_bytes()
    assert len(data) >= 3 * 4096
    db.write_bytes(data[: len(data) // 2])
    assert "truncated" in error(db)
    db.write_bytes(data[:60])
    assert "not an SQLite database" in error(db)


def test_corrupt_pages(db):
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page after the header
    db.write_bytes(bytes(data))
    assert "unreadable SQLite database" in error(db)


@pytest.mark.parametrize(
    "missing, layer",
    [
        ("kegg", "kegg"),
        ("go_bp", "go-bp"),
        ("genes", "pfam"),
        ("cytogenetic_locations", "cytoband"),
    ],
)
def test_missing_table(tmp_path, missing, layer):
    path = make_db(tmp_path / "org.sqlite", skip=(missing,))
    msg = error(path, [layer])
    assert f"no table '{missing}'" in msg and "org.Hs.eg.db" in msg


def test_missing_column(tmp_path):
    path = make_db(tmp_path / "org.sqlite", schema={"go_bp": "_id INTEGER, go_id CHAR(10)"})
    msg = error(path, ["go-bp"], exclude_evidence=["IEA"])
    assert "'go_bp'" in msg and "evidence" in msg


def test_unknown_layer(db):
    msg = error(db, ["go-bp", "string-ppi"])
    assert "unknown layer 'string-ppi'" in msg
    assert all(name in msg for name in LAYERS)
    assert "no layers requested" in error(db, [])
    assert list(coannotation_layers(db, "kegg")) == ["kegg"]  # a lone name, not its letters


def test_layer_without_edges(db):
    msg = error(db, ["go-mf"], min_term_size=3)
    assert "'go-mf' has no edges" in msg and "max_term_size" in msg


def test_layer_emptied_by_evidence_filter(db):
    msg = error(db, ["go-mf"], exclude_evidence=["IEA"])
    assert "'go-mf' has no edges" in msg and "without evidence IEA" in msg


def test_empty_table(tmp_path):
    path = tmp_path / "org.sqlite"
    make_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM kegg")
    conn.close()
    assert "'kegg' has no edges" in error(path, ["kegg"])


@pytest.mark.parametrize("lo, hi", [(1, 100), (5, 4)])
def test_bad_size_bounds(db, lo, hi):
    assert "min_term_size" in error(db, min_term_size=lo, max_term_size=hi)


# --- the real database, when available ----------------------------------------------------

REAL_DB = os.environ.get("TNFAST_ORGDB")


@pytest.mark.skipif(
    not REAL_DB or not Path(REAL_DB).is_file(), reason="set TNFAST_ORGDB to org.Hs.eg.sqlite"
)
def test_real_go_bp():
    layer = coannotation_layers(REAL_DB, ["go-bp"])["go-bp"]
    assert len(layer.genes) > 10_000 and len(layer.src) > 500_000
    assert (layer.src < layer.dst).all() and (layer.weight > 0).all()
    assert all(x.isdigit() for x in layer.genes[:100])
