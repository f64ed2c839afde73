"""Memory estimates of `tnfast data import`, from cheap probes made before anything is read.

Each source gets a :class:`Cost`: the peak its reader reaches while reading it, and what the
importer keeps of it afterwards (import holds every source at once, then builds the bundle).
The probes never read the data: text tables are sampled (their first ~64 KiB of text; for .gz
the compression ratio comes from the same sample), GCTX matrices and .npy arrays are sized from
their headers, org.Hs.eg.sqlite layers from a count of genes per term. A probe that cannot make
sense of a file returns None and leaves the error to the reader, which words it properly.

The per-line, per-field and per-byte constants below were measured on 2026-11-30 (Python 3.11,
numpy 2, glibc malloc, the shared 2-core machine): the peak resident memory above the process's
resident memory before the call (``ru_maxrss`` minus VmRSS, one fresh process per file) of the
real readers on generated files. Text tables, B bytes of text in n lines of k fields:

* edge lists (``read_edge_list``): 2-column Entrez pairs (11 B/line), 3-column Entrez + weight
  (18 B/line), STRING ``protein1 protein2 combined_score`` (46 B/line) and 2-column 29-character
  symbols (60 B/line), 2e5 and 1e6 lines each: 679, 746, 1270 and 1483 MB per million lines; a
  least-squares fit gives peak = 17 B + 465 n (every point within 5%). The per-byte term is the
  ids held four times over as numpy unicode (4 bytes a character) besides the text.
* matrices (``read_matrix``: features, signature TSVs): 65 columns x 2e4 and 1e5 rows, 979 x 1e3
  and 5e3, 9 x 3e5, 201 x 2e4 with 3-character values and 201 x 1e4 with 14-character values:
  2 B + 435 n + 84 n k (within 12%). A .gz file costs the same as its text (checked: STRING
  1e6 lines and the 65 x 1e5 matrix, gzipped).
* id tables (``read_id_map``; also gene lists and split files): 2 columns, 1e6 lines of 28 and
  56 B, 2e5 of 27 B: 3.3 B + 510 n (within 2%).

Binary sources: GCTX (``read_signature_file``) 978 x 5,000 and 978 x 20,000 float32: 14.8 and
13.4 B per matrix value (the stored array, its transposed float32 copy, another copy, masks);
.npy features 20,000 x 2,000 float64: 13.1 B per value (the array, a finite-check mask, the
float32 copy). Building the bundle after reading: 978 x 20,000 signatures of one type took
28 B per value in all (the averaging runs in float64). org.Hs.eg.sqlite layers (a generated
database of 20,000 genes with 4,000 and 16,000 GO terms of 2-150 genes): 150 B per (gene, term)
row + 45 B per edge of the bound below (within 6%).

Whole imports through the CLI, estimate over measured peak: the l1000 example (3 GCTX,
features.tsv.gz, 3 split files) 95 vs 100 MiB; the 16,000-term database 3.2 GiB vs 3,100 MiB;
two edge lists (1e6 and 2e5 lines), a gzipped 65 x 1e5 feature table and a 978 x 20,000 GCTX
together 1.1 GiB vs 955 MiB.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..memory import format_count, format_size, memory_bound, peak_note, process_rss, require
from .tables import delimiter

SAMPLE = 64 << 10  # text sampled per table

# (per byte of text, per line, per field) of each text reader; see the module doc
_EDGES = (17.0, 465.0, 0.0)
_MATRIX = (2.0, 435.0, 84.0)
_IDS = (3.3, 510.0, 0.0)
# memory the allocator keeps after a text read is freed (small objects in its arenas): measured
# 13% of the first table's peak still resident while a second one was read
_SLACK = 0.15


class Cost(NamedTuple):
    peak: int  # bytes while the source is read
    kept: int  # bytes the importer holds of it afterwards
    what: str  # its size in words: 'about 1.3e9 edges'
    edges: int = 0  # network edges it yields (for the build step)
    values: int = 0  # signature or feature values it yields (for the build step)


class TextShape(NamedTuple):
    lines: float  # estimated lines in the whole file
    text_bytes: float  # estimated bytes of (decompressed) text
    fields: float  # mean fields per line in the sample


def _sample(path: Path) -> tuple[bytes, float, bool] | None:
    """(first ~SAMPLE bytes of text, estimated total text bytes, whether the sample is all of it)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.suffix != ".gz":
            head = f.read(SAMPLE)
            return head, float(max(size, len(head))), len(head) >= size
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out, consumed = [], 0
        n_out = 0
        while n_out < SAMPLE:
            chunk = f.read(1024)  # small steps: the ratio counts only what was fed
            if not chunk:
                break
            while chunk:
                piece = d.decompress(chunk)
                out.append(piece)
                n_out += len(piece)
                rest = d.unused_data
                consumed += len(chunk) - len(rest)
                chunk = rest
                if d.eof:  # another gzip member may follow
                    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        text = b"".join(out)
        whole = not f.read(1) and (d.eof or not d.unconsumed_tail)
    if whole or consumed == 0:
        return text, float(len(text)), whole
    return text, size * len(text) / consumed, False


def text_shape(path: str | os.PathLike) -> TextShape | None:
    """Lines, text bytes and fields per line of a (gzipped) text table, from its first ~64 KiB."""
    p = Path(path)
    try:
        if not p.is_file():  # a pipe cannot be sampled without eating it; a missing file is the reader's
            return None
        head, total, whole = _sample(p)
    except Exception:  # noqa: BLE001 (unreadable, damaged gzip: the reader says what is wrong)
        return None
    if not whole:
        cut = head.rfind(b"\n")
        head = head[:cut + 1] if cut >= 0 else head  # complete lines only
    text = head.decode("utf-8", "replace")
    lines = text.splitlines()
    if not lines:
        return TextShape(1.0, total, 1.0)
    data = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    delim = delimiter(p, data[0]) if data else None
    fields = np.mean([len(ln.split(delim) if delim else ln.split()) for ln in data]) if data else 1.0
    n = len(lines) if whole else total * len(lines) / max(len(head), 1)
    return TextShape(float(n), float(total), float(fields))


def _table_cost(shape: TextShape, constants: tuple[float, float, float]) -> float:
    per_byte, per_line, per_field = constants
    return per_byte * shape.text_bytes + per_line * shape.lines + per_field * shape.lines * shape.fields


def edge_list_cost(path: str | os.PathLike) -> Cost | None:
    s = text_shape(path)
    if s is None:
        return None
    peak = _table_cost(s, _EDGES)
    # kept: src, dst (int64) and weight (float32) per edge, plus what the allocator keeps
    return Cost(int(peak), int(20 * s.lines + _SLACK * peak), f"about {format_count(s.lines)} edges",
                edges=int(s.lines))


def matrix_cost(path: str | os.PathLike, what: str = "values") -> Cost | None:
    s = text_shape(path)
    if s is None:
        return None
    peak = _table_cost(s, _MATRIX)
    cols = max(s.fields - 1, 1)
    values = s.lines * cols
    return Cost(int(peak), int(4 * values + 64 * s.lines + _SLACK * peak),
                f"about {format_count(s.lines)} rows x {cols:,.0f} columns", values=int(values))


def id_table_cost(path: str | os.PathLike) -> Cost | None:
    s = text_shape(path)
    if s is None:
        return None
    peak = _table_cost(s, _IDS)
    return Cost(int(peak), int(0.5 * peak), f"about {format_count(s.lines)} lines")


def gctx_cost(path: str | os.PathLike) -> Cost | None:
    """From the matrix dataset's header (shape and dtype); the data are never read."""
    import h5py

    from .gctx import MATRIX

    if not Path(path).is_file():  # (a pipe would be eaten by the probe)
        return None
    try:
        with h5py.File(path, "r") as f:
            ds = f.get(MATRIX)
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                return None
            (n_cols, n_rows), itemsize = ds.shape, ds.dtype.itemsize
    except Exception:  # noqa: BLE001 (any unreadable file: the reader says what is wrong)
        return None
    values = n_cols * n_rows
    return Cost(int((itemsize + 10) * values + 300 * n_cols), int(4 * values + 100 * n_cols),
                f"a {n_rows:,} x {n_cols:,} matrix", values=values)


def npy_header(f) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the header of the .npy file open at ``f``; None for an unknown format
    version. The array is never read."""
    from numpy.lib import format as npy

    read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(npy.read_magic(f))
    if read is None:
        return None
    shape, _, dtype = read(f)
    return shape, dtype


def npy_cost(path: str | os.PathLike) -> Cost | None:
    """From the .npy header; the array is never loaded."""
    if not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as f:
            header = npy_header(f)
    except Exception:  # noqa: BLE001 (not an .npy file: np.load says so)
        return None
    if header is None:
        return None
    shape, dtype = header
    values = int(np.prod(shape, dtype=np.float64))
    dims = " x ".join(f"{d:,}" for d in shape)
    return Cost(int((dtype.itemsize + 5) * values), 4 * values, f"a {dims} array of {dtype}", values=values)


def signature_cost(path: str | os.PathLike) -> Cost | None:
    return gctx_cost(path) if Path(path).suffix.lower() == ".gctx" else matrix_cost(path)


def features_cost(path: str | os.PathLike) -> Cost | None:
    return npy_cost(path) if Path(path).suffix == ".npy" else matrix_cost(path)


def orgdb_cost(path: str | os.PathLike, layers, max_term_size: int, min_term_size: int = 2) -> Cost | None:
    """An upper bound of the co-annotation edges: per layer, the sum over its terms of
    s (s - 1) / 2 for the s genes of each term within the size bounds (one count query per
    layer; the real number is lower where terms overlap)."""
    from .orgdb import LAYERS, term_sql

    if not Path(path).is_file():
        return None
    rows = edges = 0
    try:
        with closing(sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            for name in dict.fromkeys(layers):
                if name not in LAYERS:
                    return None
                table, term = term_sql(name)
                sizes = np.array([n for (n,) in conn.execute(
                    f"SELECT COUNT(DISTINCT t._id) FROM {table} AS t WHERE {term} IS NOT NULL AND {term} != '' "
                    f"GROUP BY {term}")], dtype=np.float64)
                rows += sizes.sum()
                inside = sizes[(sizes >= min_term_size) & (sizes <= max_term_size)]
                edges += (inside * (inside - 1) / 2).sum()
    except Exception:  # noqa: BLE001 (a damaged database: the reader says what is wrong)
        return None
    return Cost(int(150 * rows + 45 * edges), int(20 * edges), f"at most {format_count(edges)} edges",
                edges=int(edges))


def check_import(max_memory: int | None, sources: list[tuple[str, Cost | None]],
                 progress: Callable[[str], None] | None = None) -> None:
    """Refuse the import before reading anything when a step would not fit.

    ``sources``: (file, cost) in the order the importer reads them. Each is checked with what
    the ones before it keep (the importer holds them all), then the build of the bundle from
    all of them: the edge lists turned into CSRs, the signatures averaged (float64), the
    features placed per gene. When it fits, ``progress`` hears the estimated peak."""
    known = [(w, c) for w, c in sources if c is not None]
    bound = memory_bound(max_memory)
    if not known:
        return
    base = process_rss()
    held, peak = 0, 0
    for where, cost in known:
        before = f" beside the {format_size(held)} the sources before it need" if held else ""
        need = base + held + cost.peak
        require(need, bound, where, f"to import ({cost.what}{before})")
        held += cost.kept
        peak = max(peak, need)
    edges = [c.edges for _, c in known]
    # build_csr: ~150 B per edge of the layer at hand, 16 B per edge of every finished CSR;
    # signature averaging 24 B per value beyond the 4 held; features 8 B per value
    need = base + held + 150 * max(edges) + 16 * sum(edges) + 24 * sum(c.values for _, c in known)
    where, cost = max(known, key=lambda wc: wc[1].kept)
    others = len(known) - 1
    what = (f"to build the bundle from it ({cost.what}) and {others} other source{'s' * (others > 1)}" if others
            else f"to import ({cost.what})")
    require(need, bound, where, what)
    if progress is not None:
        progress(peak_note(max(peak, need), bound))
