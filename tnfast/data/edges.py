"""Network layers as they come in: edge lists keyed by gene id, before the universe is known."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .tables import is_number, parse_floats, read_rows


class EdgeList(NamedTuple):
    """Edges between genes named by id; ``src``/``dst`` index into ``genes``."""

    genes: np.ndarray  # (k,) str, unique gene ids
    src: np.ndarray  # (m,) int64
    dst: np.ndarray  # (m,) int64
    weight: np.ndarray  # (m,) float32, > 0


# Header names seen in the wild (STRING, BioGRID tab2 exports reduced to two columns, PyG/networkx dumps).
_HEADER_WORDS = {"source", "target", "from", "to", "gene1", "gene2", "gene_a", "gene_b", "genea", "geneb",
                 "protein1", "protein2", "node1", "node2", "id1", "id2", "entrez_a", "entrez_b",
                 "src", "dst", "weight", "score", "combined_score"}


def read_edge_list(
    path: str | os.PathLike,
    id_map: dict[str, str] | None = None,
    min_score: float | None = None,
    max_unmapped: float = 0.2,
) -> EdgeList:
    """An edge list file: 2 columns (gene, gene) or 3 (gene, gene, weight), optional header.

    Comment lines start with '#'. Delimiter: tab, comma (.csv) or whitespace (STRING's
    ``protein1 protein2 combined_score``). With ``id_map`` (e.g. symbol or STRING protein id ->
    Entrez id) ids are translated and unmapped edges dropped; more than ``max_unmapped`` of them
    dropped is an error, since it means the wrong map or id type. ``min_score`` keeps edges whose
    weight column is at least that value.
    """
    rows = read_rows(path, min_columns=2)
    width = len(rows[0][1])
    if width > 3:
        raise InputError(path, f"expected 2 or 3 columns (gene, gene[, weight]), found {width}",
                         place=f"line {rows[0][0]}")
    first = rows[0][1]
    # Both names must be header words: 'SRC YES1' is an edge between two genes, 'source target' a header.
    if {first[0].lower(), first[1].lower()} <= _HEADER_WORDS or (width == 3 and not is_number(first[2])):
        rows = rows[1:]
    if not rows:
        raise InputError(path, "has no edges")
    a = np.array([r[0] for _, r in rows], dtype=str)
    b = np.array([r[1] for _, r in rows], dtype=str)
    empty = np.flatnonzero((a == "") | (b == ""))
    if len(empty):
        raise InputError(path, "empty gene id (expected gene, gene[, weight])", place=f"line {rows[empty[0]][0]}")
    if width == 3:
        w = parse_floats(path, rows, None, start=2)[:, 0]
        bad = np.flatnonzero(w <= 0)
        if len(bad) and min_score is None:
            raise InputError(path, f"edge weight {w[bad[0]]} must be > 0", place=f"line {rows[bad[0]][0]}")
    elif min_score is not None:
        raise InputError(path, "--min-score needs a third (score) column")
    else:
        w = np.ones(len(a), np.float32)
    keep = np.ones(len(a), bool)
    if min_score is not None:
        keep &= w >= min_score
        keep &= w > 0
    if id_map is not None:
        a = np.array([id_map.get(x, "") for x in a.tolist()], dtype=str)
        b = np.array([id_map.get(x, "") for x in b.tolist()], dtype=str)
        mapped = (a != "") & (b != "")
        lost = 1.0 - mapped[keep].mean() if keep.any() else 0.0
        if lost > max_unmapped:
            line = rows[int(np.flatnonzero(keep & ~mapped)[0])][0]
            raise InputError(path, f"{lost:.0%} of edges have ids missing from the id map (at most "
                                   f"{max_unmapped:.0%} allowed; wrong map or id type?)", place=f"line {line}")
        keep &= mapped
    if not keep.any():
        raise InputError(path, "no edges left" + (f" with score >= {min_score}" if min_score is not None else ""))
    a, b, w = a[keep], b[keep], w[keep]
    genes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    return EdgeList(genes, inv[: len(a)].astype(np.int64), inv[len(a):].astype(np.int64), w)


def read_id_map(path: str | os.PathLike) -> dict[str, str]:
    """Two-column table: external id (symbol, STRING protein, ...) -> gene id. Header optional."""
    rows = read_rows(path, min_columns=2)
    out = {}
    for _, r in rows:
        out.setdefault(r[0], r[1])
    return out
