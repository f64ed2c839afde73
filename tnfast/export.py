"""`tnfast export`: a preds.zarr (or part of it) as GCTX in the CMap layout, or as TSV.

GCTX: rows are the landmark genes, columns ``<pert_type code>:<gene>`` (e.g. ``trt_xpr:7157``)
with column metadata ``pert_type`` (trt_sh, trt_xpr, trt_oe), ``pert_gene_id``,
``perturbation`` (RNAi, CRISPR, OE) and ``measured`` (1 where the gene was measured in that
type) — the same conventions as CMap's level-5 files, so `tnfast data import` and CMap tools
read it back. TSV: one row per (perturbation, gene), columns ``perturbation``, ``gene_id`` and
one per landmark. Both are written while streaming the store, under a temporary name.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_file, check_new_file
from .data.bundle import TYPE_CODES
from .data.gctx import gctx_writer
from .errors import InputError
from .preds import open_preds

FORMATS = ("gctx", "tsv")


def export(preds: str | os.PathLike, fmt: str, out: str | os.PathLike, types: list[str] | None = None,
           genes: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    out = Path(out)
    if fmt not in FORMATS:
        raise InputError("--format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "gctx" and out.suffix.lower() == ".gz":
        # refused, not gzipped: CMap tools and `tnfast data import` read GCTX only as plain HDF5
        raise InputError(out, "a .gz name with --format gctx: GCTX is an HDF5 file, read unzipped; "
                              "name it .gctx (only --format tsv is gzipped by a .gz name)")
    check_new_file(out, overwrite)
    p = open_preds(preds)
    ti = p.select_types(types)
    gi = np.arange(len(p.genes)) if genes is None else p.select_genes(genes)
    if fmt == "gctx":
        _gctx(p, ti, gi, out)
    else:
        _tsv(p, ti, gi, out)
    return out


def _gctx(p, ti: np.ndarray, gi: np.ndarray, out: Path) -> None:
    types = p.types[ti]
    codes = np.repeat([TYPE_CODES[t] for t in types.tolist()], len(gi))
    gene_ids = np.tile(p.genes[gi], len(ti))
    numeric = all(g.isdigit() for g in p.genes[gi].tolist())
    col_meta = {"pert_type": codes, "pert_gene_id": gene_ids.astype(np.int64) if numeric else gene_ids,
                "perturbation": np.repeat(types, len(gi)),
                "measured": p.measured[np.ix_(ti, gi)].reshape(-1).astype(np.int8)}
    col_ids = np.char.add(np.char.add(codes, ":"), gene_ids)
    with gctx_writer(out, p.landmarks, col_ids, col_meta=col_meta) as put:
        done = 0
        for pos, block in p.chunks(gi):
            for j, t in enumerate(ti):  # column of (type j, gene) = j * len(gi) + rank of the gene
                put(j * len(gi) + done, block[t].T)
            done += len(pos)


def _tsv(p, ti: np.ndarray, gi: np.ndarray, out: Path) -> None:
    opener = gzip.open if out.suffix == ".gz" else open
    with atomic_file(out) as tmp, opener(tmp, "wt", encoding="utf-8", newline="") as f:
        f.write("\t".join(["perturbation", "gene_id", *p.landmarks.tolist()]) + "\n")
        for t in ti:  # type-major, like the GCTX columns
            for pos, block in p.chunks(gi):
                for g, row in zip(p.genes[pos].tolist(), block[t]):
                    # 9 significant digits: every float32 reads back to itself
                    f.write(f"{p.types[t]}\t{g}\t" + "\t".join(f"{v:.9g}" for v in row.tolist()) + "\n")
