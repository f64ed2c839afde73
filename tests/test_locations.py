"""Gene locations: in the bundle, from org.Hs.eg.sqlite, from a table, and through `tnfast data import`."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, tnfast
from test_catalogue import GENES, LM, gctx
from test_orgdb import make_db

from tnfast.data.bundle import Bundle, Locations, load_bundle
from tnfast.data.locations import (BUILTIN_SOURCE, BUILTIN_TABLE, builtin_locations, chromosome_name, parse_band,
                                   read_locations_table)
from tnfast.data.orgdb import gene_locations, write_locations_table
from tnfast.data.tables import read_id_list
from tnfast.errors import InputError


def locs(*places) -> Locations:
    chromosome, start, arm = zip(*places) if places else ((), (), ())
    return Locations(np.array(chromosome, dtype=str), np.array(start, np.int64), np.array(arm, dtype=str))


def as_list(loc: Locations) -> list[tuple]:
    return list(zip(loc.chromosome.tolist(), loc.start.tolist(), loc.arm.tolist()))


# --------------------------------------------------------------------------- the bundle

def located_bundle() -> Bundle:
    return Bundle(np.array(["1", "2", "3"]), np.array(["16", "23"]), meta={"name": "b"},
                  gene_locations=locs(("12", 9_067_707, "p"), ("", -1, ""), ("X", 0, "")),
                  landmark_locations=locs(("MT", 7_443, ""), ("1", 5, "q")))


def test_round_trip_with_locations(tmp_path):
    b = located_bundle()
    c = load_bundle(b.save(tmp_path / "b"))
    for x, y in ((b.gene_locations, c.gene_locations), (b.landmark_locations, c.landmark_locations)):
        assert as_list(x) == as_list(y)
        assert y.chromosome.dtype.kind == "U" and y.start.dtype == np.int64 and y.arm.dtype.kind == "U"
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["locations"] is True
    assert c.meta == {"name": "b"}
    with np.load(tmp_path / "b" / "locations.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(f"{w}_{k}" for w in ("gene", "landmark") for k in ("chromosome", "start", "arm"))
    again = load_bundle(c.save(tmp_path / "again"))
    assert as_list(again.gene_locations) == as_list(b.gene_locations)


def test_no_locations_writes_what_it_always_wrote(tmp_path):
    b = Bundle(np.array(["1", "2"]), np.array(["16"]), meta={"name": "b"})
    path = b.save(tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "genes.tsv", "landmarks.tsv"]
    assert "locations" not in json.loads((path / "bundle.json").read_text())
    c = load_bundle(path)
    assert c.gene_locations is None and c.landmark_locations is None
    m = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**m, "locations": False}))
    assert load_bundle(path).gene_locations is None


def test_locations_need_both_halves(tmp_path):
    b = located_bundle()
    b.landmark_locations = None
    with pytest.raises(ValueError, match="together"):
        b.save(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def _rewrite(path: Path, **changes) -> None:
    with np.load(path / "locations.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path / "locations.npz", **{k: v for k, v in arrays.items() if v is not None})


DAMAGE = {
    "truncated": (lambda p: (p / "locations.npz").write_bytes((p / "locations.npz").read_bytes()[:100]),
                  "not a readable .npz"),
    "missing_array": (lambda p: _rewrite(p, landmark_arm=None), "missing arrays ['landmark_arm']"),
    "wrong_length": (lambda p: _rewrite(p, gene_start=np.array([1, 2], np.int64)), "length 3, one per gene"),
    "start_not_integer": (lambda p: _rewrite(p, gene_start=np.array([1.5, -1, 0])), "'gene_start' is float64, expected integer"),
    "start_below_minus_one": (lambda p: _rewrite(p, landmark_start=np.array([-5, 1], np.int64)), "landmark_start below -1"),
    "bad_arm": (lambda p: _rewrite(p, gene_arm=np.array(["p", "", "x"])), "gene_arm values must be 'p', 'q'"),
    "arm_not_text": (lambda p: _rewrite(p, gene_arm=np.array([1, 0, 0])), "'gene_arm' is int64, expected text"),
    "manifest_flag_not_bool": (lambda p: p.joinpath("bundle.json").write_text(
        json.dumps({**json.loads(p.joinpath("bundle.json").read_text()), "locations": "yes"})), "'locations' must be"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_locations_are_one_input_error(tmp_path, case):
    path = located_bundle().save(tmp_path / "b")
    damage, words = DAMAGE[case]
    damage(path)
    with pytest.raises(InputError) as e:
        load_bundle(path)
    msg = str(e.value)
    named = path / ("bundle.json" if case.startswith("manifest") else "locations.npz")
    assert msg.startswith(f"{named}:") and words in msg and "\n" not in msg, msg


def test_missing_locations_file(tmp_path):
    path = located_bundle().save(tmp_path / "b")
    (path / "locations.npz").unlink()
    with pytest.raises(InputError, match="locations.npz: no such file"):
        load_bundle(path)


# --------------------------------------------------------------------------- names and bands

@pytest.mark.parametrize("name, expected", [("12", "12"), ("chr12", "12"), ("chrX", "X"), ("x", "X"), ("M", "MT"),
                                            ("chrM", "MT"), ("MT", "MT"), (" 7 ", "7")])
def test_chromosome_name(name, expected):
    assert chromosome_name(name) == expected


@pytest.mark.parametrize("band, expected", [
    ("12p13.31", ("12", "p")), ("Xq28", ("X", "q")), ("1q21.1-q21.2", ("1", "q")), ("1p", ("1", "p")),
    ("6p21.3 alternate reference locus", ("6", "p")), ("X", ("X", "")), ("2cen-q13", ("2", "")),
    ("chr7q11", ("7", "q")), ("19q13-qter", ("19", "q")), ("map from Rosati ref via FISH [AFS]", None),
    ("tdb7990", None), ("123", None), ("", None),
])
def test_parse_band(band, expected):
    assert parse_band(band) == expected


# --------------------------------------------------------------------------- org.Hs.eg.sqlite

def test_orgdb_locations(tmp_path):
    db = make_db(tmp_path / "org.Hs.eg.sqlite")
    got = gene_locations(db, ["1", "10", "100", "2", "9", "1000", "7", "55", "12345"])
    assert as_list(got) == [
        ("6", 31_000_000, "p"),
        ("6", 32_000_100, "p"),  # the alt-contig row skipped; minus strand: without the sign
        ("6", 33_000_500, "p"),
        ("1", 1_000, "p"),
        ("12", 9_067_707, "p"),  # on X and 12: its band says 12
        ("MT", 7_443, ""),
        ("2", 100, ""),  # band "2cen-q13": no arm
        ("", -1, ""),  # no location
        ("", -1, ""),  # not in the database
    ]
    assert got.start.dtype == np.int64
    assert as_list(gene_locations(db, [])) == []


def test_orgdb_without_the_location_tables(tmp_path):
    for table in ("chromosome_locations", "cytogenetic_locations"):
        db = make_db(tmp_path / f"{table}.sqlite", skip=(table,))
        with pytest.raises(InputError, match=f"no table '{table}'.*org.Hs.eg.db"):
            gene_locations(db, ["1"])
    db = make_db(tmp_path / "cols.sqlite", schema={"chromosome_locations": "_id INTEGER, chrom TEXT, start_location INTEGER"})
    with pytest.raises(InputError, match="'chromosome_locations' lacks org.Hs.eg.db's columns"):
        gene_locations(db, ["1"])


REAL_DB = Path(os.environ.get("TNFAST_ORGDB", "no org.Hs.eg.sqlite given (TNFAST_ORGDB)"))
EXAMPLE = SHARED_DATA / "l1000-example"


@pytest.mark.skipif(not REAL_DB.is_file() or not EXAMPLE.is_dir(),
                    reason="needs org.Hs.eg.sqlite (TNFAST_ORGDB) and ../shared/data")
def test_real_database_locates_every_landmark():
    landmarks = read_id_list(EXAMPLE / "landmarks.tsv")[1:]  # (its header is pr_gene_id)
    assert len(landmarks) == 978
    got = gene_locations(REAL_DB, landmarks.tolist())
    assert (got.chromosome != "").all() and np.isin(got.arm, ["p", "q"]).all() and (got.start > 0).all()


@pytest.mark.skipif(not REAL_DB.is_file(), reason="needs org.Hs.eg.sqlite 3.16 (TNFAST_ORGDB)")
def test_the_builtin_table_is_what_the_real_database_writes(tmp_path):
    write_locations_table(REAL_DB, tmp_path / "t.tsv.gz")
    assert (tmp_path / "t.tsv.gz").read_bytes() == BUILTIN_TABLE.read_bytes()


def test_write_locations_table(tmp_path):
    db = make_db(tmp_path / "org.Hs.eg.sqlite")
    for name in ("t.tsv", "t.tsv.gz"):
        assert write_locations_table(db, tmp_path / name) == 7
        assert read_locations_table(tmp_path / name) == {  # as gene_locations gives them (test_orgdb_locations)
            "1": ("6", 31_000_000, "p"), "10": ("6", 32_000_100, "p"), "100": ("6", 33_000_500, "p"),
            "2": ("1", 1_000, "p"), "9": ("12", 9_067_707, "p"), "1000": ("MT", 7_443, ""), "7": ("2", 100, "")}
    lines = gzip.open(tmp_path / "t.tsv.gz", "rt").read().splitlines()
    assert lines[0].startswith("# Gene locations from Bioconductor's org.Hs.eg.db") and lines[3] == "gene_id\tchromosome\tstart\tarm"
    assert [x.split("\t")[0] for x in lines[4:]] == ["1", "2", "7", "9", "10", "100", "1000"]  # numeric order
    first = (tmp_path / "t.tsv.gz").read_bytes()
    write_locations_table(db, tmp_path / "t.tsv.gz")  # the same bytes again: no time stamp in the gzip header
    assert (tmp_path / "t.tsv.gz").read_bytes() == first


# GRCh38 starts and cytogenetic arms of well-known genes (NCBI Gene / UCSC), independent of the table.
KNOWN = {"7157": ("17", 7_661_779, "p"),  # TP53, 17p13.1
         "1956": ("7", 55_019_017, "p"),  # EGFR, 7p11.2
         "672": ("17", 43_044_295, "q"),  # BRCA1, 17q21.31
         "4609": ("8", 127_735_434, "q"),  # MYC, 8q24.21
         "3845": ("12", 25_205_246, "p"),  # KRAS, 12p12.1
         "7503": ("X", 73_820_651, "q")}  # XIST, Xq13.2


def test_the_builtin_table():
    table = builtin_locations()
    assert len(table) > 28_000
    for gene, (chromosome, start, arm) in KNOWN.items():
        c, s, a = table[gene]
        assert (c, a) == (chromosome, arm) and abs(s - start) < 10_000, (gene, table[gene])  # (GRCh37 is >60 kb off)


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="needs ../shared/data")
def test_the_builtin_table_places_every_landmark_and_example_gene():
    table = builtin_locations()
    landmarks = read_id_list(EXAMPLE / "landmarks.tsv")[1:]
    genes = [line.split("\t", 1)[0] for line in gzip.open(EXAMPLE / "features.tsv.gz", "rt").read().splitlines()[1:]]
    assert len(landmarks) == 978 and len(genes) == 584
    for g in [*landmarks.tolist(), *genes]:
        assert g in table and table[g][2] in ("p", "q"), g


# --------------------------------------------------------------------------- a locations table

def table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_table_with_arm_or_cytoband(tmp_path):
    arms = table(tmp_path / "a.tsv", "gene_id\tchromosome\tstart\tarm\tsymbol\n1\tchr19\t58345182\tq\tA1BG\n"
                                     "2\t12\t9067707\t\tA2M\n7\tX\t5\tP\tZ\n")
    assert read_locations_table(arms) == {"1": ("19", 58345182, "q"), "2": ("12", 9067707, ""), "7": ("X", 5, "p")}
    bands = table(tmp_path / "b.csv", "cytoband,start,chromosome,gene_id\n19q13.43,58345182,19,1\n"
                                      "12p13.31,9067707,12,2\n,7,MT,4535\n2cen-q13,9,2,3\n")
    assert read_locations_table(bands) == {"1": ("19", 58345182, "q"), "2": ("12", 9067707, "p"),
                                           "4535": ("MT", 7, ""), "3": ("2", 9, "")}


@pytest.mark.parametrize("text, words", [
    ("gene_id\tchromosome\tstart\tarm\n1\t19\t58e6\tq\n", ["line 2", "start '58e6'", "non-negative integer"]),
    ("gene_id\tchromosome\tstart\tarm\n1\t19\t-5\tq\n", ["line 2", "start '-5'"]),
    ("gene_id\tchromosome\tstart\tarm\n1\t19\t5\tq\n2\t3\t7\tcen\n", ["line 3", "arm 'cen'", "p or q"]),
    ("gene_id\tchromosome\tstart\tcytoband\n1\t19\t5\t12p13\n", ["line 2", "cytoband '12p13'", "chromosome 19"]),
    ("gene_id\tchromosome\tstart\tcytoband\n1\t19\t5\tsomewhere\n", ["line 2", "cytoband 'somewhere'"]),
    ("gene_id\tchromosome\tstart\tarm\n1\t6_GL000251v2_alt\t5\tp\n", ["line 2", "chromosome '6_GL000251v2_alt'"]),
    ("gene_id\tchromosome\tstart\n1\t19\t5\n", ["line 1", "missing: arm or cytoband"]),
    ("gene\tchr\tstart\tarm\n1\t19\t5\tp\n", ["line 1", "missing: gene_id, chromosome"]),
    ("gene_id\tchromosome\tstart\tarm\n1\t19\t5\tp\n1\t19\t6\tp\n", ["line 3", "duplicate gene id '1'"]),
    ("gene_id\tchromosome\tstart\tarm\n", ["no data lines"]),
])
def test_bad_table(tmp_path, text, words):
    path = table(tmp_path / "loc.tsv", text)
    with pytest.raises(InputError) as e:
        read_locations_table(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for w in words:
        assert w in msg, msg


# --------------------------------------------------------------------------- tnfast data import

def imported(d: Path, *args) -> tuple[Bundle, str]:
    d.mkdir(exist_ok=True)
    r = tnfast("data", "import", "--out", d / "out", "--signatures", gctx(d / "s.gctx"), *args, cwd=d)
    assert r.returncode == 0, r.stderr
    return load_bundle(d / "out"), r.stdout


@pytest.mark.parametrize("none", ["none", ""])
def test_import_orgdb_locations_only(tmp_path, none):
    b, stdout = imported(tmp_path, "--orgdb", make_db(tmp_path / "org.Hs.eg.sqlite"), "--layers", none)
    assert b.networks == {} and b.genes.tolist() == GENES
    assert as_list(b.gene_locations) == [
        ("6", 31_000_000, "p"), ("1", 1_000, "p"), *[("", -1, "")] * 4, ("2", 100, ""), ("", -1, "")]
    assert as_list(b.landmark_locations) == [("", -1, "")] * len(LM)  # the tiny db knows none of them
    assert "locations: 3 of 8 genes (2 with an arm), 0 of 10 landmarks (0 with an arm)" in stdout


def test_import_orgdb_layers_and_locations(tmp_path):
    b, _ = imported(tmp_path, "--orgdb", make_db(tmp_path / "org.Hs.eg.sqlite"), "--layers", "go-bp")
    assert list(b.networks) == ["go-bp"] and b.gene_locations is not None


def test_import_places_entrez_ids_with_the_builtin_table(tmp_path):
    b, stdout = imported(tmp_path)
    table = builtin_locations()
    want = [table.get(g, ("", -1, "")) for g in GENES]
    assert as_list(b.gene_locations) == want and want[0] == ("19", 58_345_182, "q")  # (1: A1BG, 19q13.43)
    assert as_list(b.landmark_locations) == [table[g] for g in LM]
    assert "locations: 3 of 8 genes (3 with an arm), 10 of 10 landmarks (10 with an arm)" in stdout
    assert b.meta["source"][-1] == BUILTIN_SOURCE


def test_import_without_locations(tmp_path):
    b, stdout = imported(tmp_path, "--no-builtin-locations")
    assert b.gene_locations is None and b.landmark_locations is None and "locations:" not in stdout


@pytest.mark.parametrize("landmarks", ["entrez", "other"])
def test_import_ids_the_builtin_table_does_not_know(tmp_path, landmarks):
    genes = [str(999_990_000 + i) for i in range(len(GENES))]  # ids no gene has (yet)
    lm = LM if landmarks == "entrez" else [str(999_999_000 + i) for i in range(len(LM))]
    r = tnfast("data", "import", "--out", tmp_path / "out",
               "--signatures", gctx(tmp_path / "s.gctx", genes=genes, landmarks=lm), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    b = load_bundle(tmp_path / "out")
    if landmarks == "entrez":  # stored: the landmarks are placed, the genes unknown
        assert (b.gene_locations.chromosome == "").all() and (b.landmark_locations.chromosome != "").all()
    else:
        assert b.gene_locations is None and b.landmark_locations is None
        assert "place none of the bundle's genes: no locations stored" in r.stdout + r.stderr


def test_import_locations_table_wins_over_orgdb(tmp_path):
    t = table(tmp_path / "loc.tsv", "gene_id\tchromosome\tstart\tcytoband\n1\t19\t58345182\t19q13.43\n"
                                    f"{LM[0]}\t3\t7\t3p21\n424242\t5\t1\t5q1\n")
    b, _ = imported(tmp_path, "--orgdb", make_db(tmp_path / "org.Hs.eg.sqlite"), "--layers", "none", "--locations", t)
    assert as_list(b.gene_locations)[:2] == [("19", 58345182, "q"), ("1", 1_000, "p")]  # 1: the table's; 2: the db's
    assert as_list(b.landmark_locations)[0] == ("3", 7, "p")
    b, _ = imported(tmp_path / "alone", "--locations", t, "--no-builtin-locations")  # a table alone
    assert as_list(b.gene_locations)[:2] == [("19", 58345182, "q"), ("", -1, "")]
    b, _ = imported(tmp_path / "builtin", "--locations", t)  # a table over the built-in one
    assert as_list(b.gene_locations)[:2] == [("19", 58345182, "q"), builtin_locations()["2"]]
    assert as_list(b.landmark_locations)[:2] == [("3", 7, "p"), builtin_locations()[LM[1]]]


# (bad --locations tables and a damaged locations.npz through the CLI: test_catalogue.py)
