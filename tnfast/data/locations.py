"""Gene locations (chromosome, start, arm) from a table, and the naming rules every source shares.

The model compares the chromosome arm of a perturbed gene with those of the landmarks (a
CRISPR cut can lose the rest of its arm), so names must agree whatever their source:
chromosomes are written "1".."22", "X", "Y", "MT" (a "chr" prefix is dropped and "M" is
"MT"), arms "p" or "q", and "" / -1 mark what is unknown.

A locations table (``--locations``) is TSV/CSV (or whitespace-separated, optionally .gz) with
a header naming the columns ``gene_id``, ``chromosome``, ``start`` and either ``arm`` (p or q)
or ``cytoband`` (e.g. "12p13.31", whose letter after the chromosome gives the arm); ``arm``
wins when both are there, other columns are ignored, and an empty arm or band means unknown.

tnfast ships one such table, ``gene_locations.tsv.gz`` beside this module: every Entrez gene
org.Hs.eg.db 3.16 places (28,257 genes; GRCh38), written by
``tnfast.data.orgdb.write_locations_table``, so that Entrez-keyed data (all of L1000) gets
locations without the database.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .bundle import Locations
from .tables import read_rows

CHROMOSOMES = (*(str(i) for i in range(1, 23)), "X", "Y", "MT")
Place = tuple[str, int, str]  # (chromosome, start, arm)
BUILTIN_TABLE = Path(__file__).with_name("gene_locations.tsv.gz")
BUILTIN_SOURCE = "tnfast's built-in gene locations (org.Hs.eg.db 3.16)"

# A band starts with its chromosome; the arm letter follows it unless the band is a whole
# chromosome ("X") or a centromere range ("2cen-q13"). Anything else after the name means it
# was no chromosome ("map from ...", "123").
_BAND = re.compile(r"^(?i:chr)?(\d{1,2}|X|Y|MT|M)(?:([pq])|cen|(?![A-Za-z0-9]))")


def chromosome_name(name: str) -> str:
    """'chr12' / '12' -> '12', 'chrM' / 'M' -> 'MT', 'x' -> 'X'."""
    s = name.strip()
    s = s[3:] if s.lower().startswith("chr") else s
    s = s.upper()
    return "MT" if s == "M" else s


def parse_band(band: str) -> tuple[str, str] | None:
    """(chromosome, arm) of a cytogenetic band ('12p13.31' -> ('12', 'p'); 'X' -> ('X', '')),
    or None when it does not start with a chromosome."""
    m = _BAND.match(band.strip())
    if m is None:
        return None
    return chromosome_name(m.group(1)), m.group(2) or ""


def unknown(n: int) -> Locations:
    return Locations(np.full(n, "", dtype="<U2"), np.full(n, -1, np.int64), np.full(n, "", dtype="<U1"))


def locations_of(ids: Sequence[str], places: dict[str, Place]) -> Locations:
    """The locations of ``ids`` in order; unknown where ``places`` has none."""
    loc = unknown(len(ids))
    for i, g in enumerate(ids):
        hit = places.get(g)
        if hit is not None:
            loc.chromosome[i], loc.start[i], loc.arm[i] = hit
    return loc


@functools.cache
def builtin_locations() -> dict[str, Place]:
    """Entrez id -> place, from the table tnfast ships (see the module doc)."""
    return read_locations_table(BUILTIN_TABLE)


def read_locations_table(path: str | os.PathLike) -> dict[str, Place]:
    """gene id -> (chromosome, start, arm) from a locations table (see the module doc)."""
    rows = read_rows(path, min_columns=3)
    (head_line, header), body = rows[0], rows[1:]
    cols = {name.strip().lower(): j for j, name in enumerate(header)}
    arm_col = "arm" if "arm" in cols else "cytoband"
    missing = [c for c in ("gene_id", "chromosome", "start") if c not in cols]
    missing += [] if arm_col in cols else ["arm or cytoband"]
    if missing:
        raise InputError(path, f"expected a header with columns gene_id, chromosome, start and arm or cytoband; "
                               f"missing: {', '.join(missing)}", place=f"line {head_line}")
    if not body:
        raise InputError(path, "has a header but no data lines")
    out: dict[str, Place] = {}
    for lineno, r in body:
        gene = r[cols["gene_id"]]
        if not gene:
            raise InputError(path, "empty gene_id", place=f"line {lineno}")
        if gene in out:
            raise InputError(path, f"duplicate gene id {gene!r}", place=f"line {lineno}")
        chromosome = _chromosome(path, lineno, r[cols["chromosome"]])
        out[gene] = (chromosome, _start(path, lineno, r[cols["start"]]),
                     _arm(path, lineno, r[cols[arm_col]], arm_col, chromosome))
    return out


def _chromosome(path, lineno: int, value: str) -> str:
    name = chromosome_name(value)
    if name not in CHROMOSOMES:
        raise InputError(path, f"chromosome {value!r} is not one of 1..22, X, Y, MT (a 'chr' prefix is fine)",
                         place=f"line {lineno}")
    return name


def _start(path, lineno: int, value: str) -> int:
    v = value.strip()
    if not (v.isascii() and v.isdigit() and len(v) <= 18):  # (18 digits: what int64 surely holds)
        raise InputError(path, f"start {value!r} is not a base-pair position (a non-negative integer)",
                         place=f"line {lineno}")
    return int(v)


def _arm(path, lineno: int, value: str, column: str, chromosome: str) -> str:
    v = value.strip()
    if column == "arm":
        if v.lower() not in ("p", "q", ""):
            raise InputError(path, f"arm {value!r} is not p or q (or empty: unknown)", place=f"line {lineno}")
        return v.lower()
    if not v:
        return ""
    band = parse_band(v)
    if band is None or band[0] != chromosome:
        raise InputError(path, f"cytoband {value!r} is not a band of chromosome {chromosome} "
                               f"(expected e.g. {chromosome}q21.1)", place=f"line {lineno}")
    return band[1]
