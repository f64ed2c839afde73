"""Gene co-annotation network layers, and gene locations, from Bioconductor's ``org.Hs.eg.sqlite``
(org.Hs.eg.db).

Two genes are linked in a layer when they share a term of that layer whose size (distinct
genes carrying it) lies in ``[min_term_size, max_term_size]``:

============  ============================  ==================================================
layer         table.column                  term
============  ============================  ==================================================
go-bp         go_bp.go_id                   GO biological process, direct annotation
go-mf         go_mf.go_id                   GO molecular function, direct annotation
go-cc         go_cc.go_id                   GO cellular component, direct annotation
kegg          kegg.path_id                  KEGG pathway (the package's 2011 snapshot)
pfam          pfam.pfam_id                  Pfam domain (NULL ids skipped)
cytoband      cytogenetic_locations.        cytogenetic band label as given ("12p13.31",
              cytogenetic_location          "1p", "17q11.2-q12"); no band hierarchy
============  ============================  ==================================================

GO uses the ``go_*`` tables (terms annotated directly), not ``go_*_all`` (every ancestor too):
ancestors are large, general terms that the size bound would drop or that would swamp the
specific ones. All evidence codes are used unless ``exclude_evidence`` names some (e.g.
``("IEA",)`` drops electronic annotations); a gene keeps a term if any remaining code
supports it.

Edge weight: the sum over shared terms of ``1 / (term_size - 1)``. A gene in a term of size s
has s - 1 partners through it, so each term hands out one unit of weight per member, and
sharing a small (specific) term counts more than sharing a big one.

Genes are Entrez ids (``genes.gene_id``, joined on ``_id``), as ``str``. Each layer lists only
the genes that have an edge in it; each unordered pair appears once, with ``src < dst``.

Locations (chromosome, start, arm: :func:`gene_locations`) come from the tables
``chromosome_locations`` and ``cytogenetic_locations``; :func:`write_locations_table` writes
them for every gene as a table (how tnfast's built-in one is made).

The database is opened read-only (``mode=ro`` URI) and never modified.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..atomic import atomic_file
from ..errors import InputError, input_file
from .bundle import Locations
from .edges import EdgeList
from .locations import CHROMOSOMES, Place, chromosome_name, locations_of, parse_band

LAYERS = ("go-bp", "go-mf", "go-cc", "kegg", "pfam", "cytoband")

# layer -> (table, term column); GO tables also carry ``evidence``.
_SOURCES = {
    "go-bp": ("go_bp", "go_id"),
    "go-mf": ("go_mf", "go_id"),
    "go-cc": ("go_cc", "go_id"),
    "kegg": ("kegg", "path_id"),
    "pfam": ("pfam", "pfam_id"),
    "cytoband": ("cytogenetic_locations", "cytogenetic_location"),
}

_SQLITE_MAGIC = b"SQLite format 3\x00"


def term_sql(layer: str) -> tuple[str, str]:
    """(table, SQL expression of the layer's term over that table aliased ``t``)."""
    table, column = _SOURCES[layer]
    term = f"t.{column}"
    if layer == "cytoband":
        # Alt-locus genes are listed as e.g. "6p21.3 alternate reference locus"; they sit in
        # that band like the primary-assembly genes.
        term = f"rtrim(replace({term}, 'alternate reference locus', ''))"
    return table, term


def coannotation_layers(
    path: str | os.PathLike,
    layers: Sequence[str],
    max_term_size: int = 100,
    min_term_size: int = 2,
    progress: Callable[[str], None] | None = None,
    exclude_evidence: Sequence[str] = (),
) -> dict[str, EdgeList]:
    """Build the requested co-annotation layers (names from :data:`LAYERS`), in request order.

    ``exclude_evidence`` (GO evidence codes, case-insensitive) applies to the GO layers only.
    Raises :class:`~tnfast.errors.InputError` for a bad file, a missing table, an unknown
    layer, bad size bounds, or a layer that ends up without edges.
    """
    wanted = list(dict.fromkeys([layers] if isinstance(layers, str) else layers))
    unknown = [name for name in wanted if name not in _SOURCES]
    if unknown:
        raise InputError(path, f"unknown layer {unknown[0]!r}; valid layers: {', '.join(LAYERS)}")
    if not wanted:
        raise InputError(path, f"no layers requested; valid layers: {', '.join(LAYERS)}")
    if not 2 <= min_term_size <= max_term_size:
        raise InputError(
            path,
            f"term size bounds must satisfy 2 <= min_term_size <= max_term_size, "
            f"got min_term_size={min_term_size}, max_term_size={max_term_size}",
        )
    excluded = sorted({code.strip().upper() for code in exclude_evidence})

    out: dict[str, EdgeList] = {}
    with closing(_connect(path)) as conn:
        tables = _tables(conn, path)
        for name in wanted:
            t0 = time.perf_counter()
            genes, terms = _annotations(conn, path, tables, name, excluded)
            layer = _coannotation(genes, terms, min_term_size, max_term_size)
            if len(layer.src) == 0:
                without = (
                    f" (without evidence {', '.join(excluded)})"
                    if excluded and name.startswith("go-")
                    else ""
                )
                raise InputError(
                    path,
                    f"layer {name!r} has no edges: no {_SOURCES[name][0]} term{without} has "
                    f"between {min_term_size} and {max_term_size} genes (raise max_term_size?)",
                )
            out[name] = layer
            if progress is not None:
                progress(
                    f"{name}: {len(layer.genes):,} genes, {len(layer.src):,} edges "
                    f"({time.perf_counter() - t0:.1f}s)"
                )
    return out


def gene_locations(path: str | os.PathLike, ids: Sequence[str]) -> Locations:
    """Chromosome, start and arm of each Entrez id in ``ids`` (unknown: "", -1, "").

    Start is ``chromosome_locations.start_location`` without its sign (org.Hs.eg.db makes the
    coordinates of minus-strand genes negative); rows on alternate or unplaced contigs
    ("6_GL000251v2_alt") are skipped, and so is a start that is not an integer (a damaged
    row: the gene's other rows may still place it). Of a gene's rows on several main chromosomes, the first
    on a chromosome its cytogenetic band names is taken (else the first): the band decides
    where a gene annotated twice really sits. The arm is the letter after the chromosome in
    ``cytogenetic_locations`` ("12p13.31" -> p), from a band on the chosen chromosome; "" when
    there is none ("2cen-q13", or no band).
    """
    with closing(_connect(path)) as conn:
        return locations_of(ids, _places(conn, path))


def write_locations_table(path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write every gene the database places (as :func:`gene_locations` does) to ``out``, a
    locations table (the format ``--locations`` reads; gzip when ``out`` ends in .gz, made
    byte-for-byte reproducible), headed by comment lines naming the database's sources and
    dates. Returns the number of genes. tnfast's built-in table is made this way."""
    with closing(_connect(path)) as conn:
        places = _places(conn, path)
        meta = dict(_rows(conn, path, "metadata", "SELECT name, value FROM metadata")
                    if "metadata" in _tables(conn, path) else [])
    lines = ["# Gene locations from Bioconductor's org.Hs.eg.db (org.Hs.eg.sqlite; Artistic-2.0 licence), "
             "written by tnfast.data.orgdb.write_locations_table",
             f"# chromosome_locations: {meta.get('GPSOURCENAME', '?')} {meta.get('GPSOURCEDATE', '?')}; "
             f"cytogenetic_locations: {meta.get('EGSOURCENAME', '?')} {meta.get('EGSOURCEDATE', '?')}",
             "# start: first base pair as the database gives it (strand ignored); arm: from the cytogenetic band, "
             "empty where unknown",
             "gene_id\tchromosome\tstart\tarm"]
    lines += [f"{g}\t{c}\t{s}\t{a}" for g, (c, s, a) in
              sorted(places.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))]
    data = ("\n".join(lines) + "\n").encode()
    with atomic_file(out) as tmp:
        if str(out).endswith(".gz"):
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
    return len(places)


def _places(conn: sqlite3.Connection, path) -> dict[str, Place]:
    """Entrez id -> (chromosome, start, arm) of every gene the database places (see gene_locations)."""
    _require(path, _tables(conn, path), "genes", "chromosome_locations", "cytogenetic_locations")
    coordinates = _rows(conn, path, "chromosome_locations",
                        "SELECT g.gene_id, c.seqname, abs(c.start_location) FROM chromosome_locations AS c "
                        "JOIN genes AS g ON g._id = c._id "
                        "WHERE instr(c.seqname, '_') = 0 AND typeof(c.start_location) = 'integer' "
                        "ORDER BY c.rowid")
    bands = _rows(conn, path, "cytogenetic_locations",
                  "SELECT g.gene_id, t.cytogenetic_location FROM cytogenetic_locations AS t "
                  "JOIN genes AS g ON g._id = t._id ORDER BY t.rowid")
    rows: dict[str, list[tuple[str, int]]] = {}
    for gene, seqname, start in coordinates:
        name = chromosome_name(str(seqname))
        if name in CHROMOSOMES:
            rows.setdefault(str(gene), []).append((name, start))
    arms: dict[str, list[tuple[str, str]]] = {}
    for gene, band in bands:
        parsed = parse_band(str(band))
        if parsed is not None:
            arms.setdefault(str(gene), []).append(parsed)
    places = {}
    for gene, here in rows.items():
        on_band = [r for r in here if any(c == r[0] for c, _ in arms.get(gene, ()))]
        chromosome, start = (on_band or here)[0]
        arm = next((a for c, a in arms.get(gene, ()) if c == chromosome and a), "")
        places[gene] = (chromosome, start, arm)
    return places


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open read-only after checking that the file looks like a whole SQLite database.

    sqlite3 opens anything lazily and fails later with a vague message (or, for a truncated
    file, possibly not at all), so the header is checked here first.
    """
    p = Path(input_file(path, "org.Hs.eg.sqlite from org.Hs.eg.db"))
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            header = f.read(100)
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise InputError(path, "not an SQLite database (expected org.Hs.eg.sqlite)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    n_pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is only trusted when its "valid-for" counter matches.
    if header[24:28] == header[92:96] and n_pages and size < page_size * n_pages:
        raise InputError(
            path, f"truncated SQLite database: {size:,} bytes, header says {page_size * n_pages:,}"
        )
    try:
        return sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise InputError(path, f"cannot open as SQLite database: {e}") from None


def _tables(conn: sqlite3.Connection, path) -> set[str]:
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        return {name for (name,) in rows}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # the latter: sqlite's message quotes non-UTF-8 bytes
        raise InputError(path, f"unreadable SQLite database (corrupt or truncated?): {e}") from None


def _require(path, tables: set[str], *needed: str) -> None:
    for name in needed:
        if name not in tables:
            raise InputError(path, f"no table {name!r} (expected from org.Hs.eg.db's org.Hs.eg.sqlite)")


def _rows(conn: sqlite3.Connection, path, table: str, sql: str, params: Sequence = ()) -> list[tuple]:
    """All rows of a query over ``table``, or one InputError naming what is wrong with the file."""
    try:
        return conn.execute(sql, params).fetchall()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        if isinstance(e, sqlite3.OperationalError) and "no such column" in str(e):
            raise InputError(path, f"table {table!r} lacks org.Hs.eg.db's columns ({e})") from None
        # (also text that is not UTF-8: "Could not decode to UTF-8 column ...")
        raise InputError(path, f"unreadable SQLite database (corrupt or truncated?): {e}") from None


def _annotations(
    conn: sqlite3.Connection, path, tables: set[str], layer: str, excluded: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (Entrez id, term) pairs of one layer, as two str arrays."""
    table, column = _SOURCES[layer]
    _require(path, tables, "genes", table)
    _, term = term_sql(layer)
    where = f"{term} IS NOT NULL AND {term} != ''"
    params: list[str] = []
    if layer.startswith("go-") and excluded:
        where += f" AND t.evidence NOT IN ({', '.join('?' * len(excluded))})"
        params = excluded
    sql = (
        f"SELECT DISTINCT g.gene_id, {term} FROM {table} AS t "
        f"JOIN genes AS g ON g._id = t._id WHERE {where}"
    )
    rows = _rows(conn, path, table, sql, params)
    if not rows:
        return np.empty(0, str), np.empty(0, str)
    genes, terms = zip(*rows)
    try:
        return np.array(genes, dtype=str), np.array(terms, dtype=str)
    except UnicodeDecodeError:  # a BLOB (bytes) that is not ASCII where text was expected
        raise InputError(path, f"binary data in place of a gene id or {column} (corrupt database?)",
                         place=f"table {table}") from None


def _coannotation(genes: np.ndarray, terms: np.ndarray, min_size: int, max_size: int) -> EdgeList:
    """Weighted co-membership from distinct (gene, term) pairs via a sparse product.

    With B the gene x term incidence and D = diag(1 / (size - 1)), B D B^T holds, for every
    gene pair, the sum of 1 / (size - 1) over their shared terms.
    """
    term_ids, t = np.unique(terms, return_inverse=True)
    sizes = np.bincount(t, minlength=len(term_ids))
    keep = (sizes[t] >= min_size) & (sizes[t] <= max_size)
    genes, t = genes[keep], t[keep]
    kept_terms, t = np.unique(t, return_inverse=True)
    gene_ids, g = np.unique(genes, return_inverse=True)
    if len(gene_ids) == 0:
        return EdgeList(np.empty(0, str), *(np.empty(0, np.int64),) * 2, np.empty(0, np.float32))
    scale = 1.0 / (sizes[kept_terms] - 1.0)
    b = sp.csr_matrix((np.ones(len(g)), (g, t)), shape=(len(gene_ids), len(kept_terms)))
    w = sp.triu((b @ sp.diags(scale)) @ b.T, k=1, format="coo")
    return EdgeList(
        gene_ids.astype(str),
        w.row.astype(np.int64),
        w.col.astype(np.int64),
        w.data.astype(np.float32),
    )
