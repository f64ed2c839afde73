"""`tnfast query`: which predicted perturbations look like a given signature?

E.g. find the gene knockdown that mimics a drug's L1000 signature. Every (perturbation, gene)
prediction of a store is scored against the query, streaming the store chunk by chunk, and
ranked best first. Methods: ``pearson``, ``spearman``, ``cosine`` and ``wtcs``, CMap's
weighted connectivity score (Subramanian et al. 2017): the query's top-``n_set`` up and down
landmarks are tested for enrichment at the top and bottom of each prediction's ranking with a
weighted Kolmogorov-Smirnov running sum; wtcs = (ES_up - ES_down) / 2 when the two have
opposite signs, else 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .data.gctx import read_gctx
from .data.importer import landmark_ids
from .data.tables import parse_floats, read_rows
from .errors import InputError
from .metrics import row_pearson
from .preds import open_preds

METHODS = ("pearson", "spearman", "cosine", "wtcs")


@dataclass
class Hit:
    perturbation: str
    gene: str
    score: float
    measured: bool


def read_query(path: str | os.PathLike, column: str | None = None) -> dict[str, float]:
    """landmark id -> value, from one GCTX column or a two-column TSV (landmark_id, value)."""
    p = Path(path)
    if p.suffix.lower() == ".gctx":
        g = read_gctx(p, cids=[column] if column is not None else None)
        if g.matrix.shape[1] != 1:
            raise InputError(p, f"has {g.matrix.shape[1]} columns; choose one with --column "
                                f"(e.g. {', '.join(g.col_ids[:3].tolist())})")
        values = g.matrix[:, 0]
        if not np.isfinite(values).all():
            raise InputError(p, "NaN or infinite values in the query column")
        ids = landmark_ids(g).tolist()
        if len(set(ids)) != len(ids):
            raise InputError(p, "duplicate landmark ids among its rows")
        return dict(zip(ids, values.tolist()))
    rows = read_rows(p, min_columns=2)
    if len(rows[0][1]) != 2:
        raise InputError(p, f"expected 2 columns (landmark_id, value), found {len(rows[0][1])}", place=f"line {rows[0][0]}")
    try:
        float(rows[0][1][1])
    except ValueError:
        rows = rows[1:]  # a header
    values = parse_floats(p, rows, None)[:, 0]
    ids = [r[0] for _, r in rows]
    if len(set(ids)) != len(ids):
        raise InputError(p, "duplicate landmark ids")
    return dict(zip(ids, values.tolist()))


def scores(pred: np.ndarray, query: np.ndarray, method: str, n_set: int = 50) -> np.ndarray:
    """(n,) similarity of each row of ``pred`` (n, L) to ``query`` (L,)."""
    q = np.broadcast_to(query, pred.shape)
    if method == "pearson":
        return row_pearson(pred, q)
    if method == "spearman":
        from scipy.stats import rankdata  # here: scipy.stats takes a second to import

        return row_pearson(rankdata(pred, axis=1), rankdata(q, axis=1))
    if method == "cosine":
        den = np.linalg.norm(pred, axis=1) * np.linalg.norm(query)
        return np.divide(pred @ query, den, out=np.zeros(len(pred)), where=den > 0)
    if method == "wtcs":
        order = np.argsort(query)
        k = min(n_set, len(query) // 2)
        up, down = order[::-1][:k], order[:k]
        es_up, es_down = _enrichment(pred, up), _enrichment(pred, down)
        return np.where(np.sign(es_up) != np.sign(es_down), (es_up - es_down) / 2, 0.0)
    raise InputError("--method", f"expected one of {', '.join(METHODS)}, got {method!r}")


def _enrichment(pred: np.ndarray, gene_set: np.ndarray) -> np.ndarray:
    """Weighted KS enrichment score of ``gene_set`` in each row's descending ranking (weight |value|)."""
    n, L = pred.shape
    order = np.argsort(-pred, axis=1, kind="stable")
    ranked = np.take_along_axis(pred, order, axis=1)
    hit = np.isin(order, gene_set)
    w = np.where(hit, np.abs(ranked), 0.0)
    total = w.sum(axis=1, keepdims=True)
    up = np.cumsum(np.divide(w, total, out=np.zeros_like(w), where=total > 0), axis=1)
    down = np.cumsum(~hit, axis=1) / max(L - len(gene_set), 1)
    walk = up - down
    hi, lo = walk.max(axis=1), walk.min(axis=1)
    return np.where(np.abs(hi) >= np.abs(lo), hi, lo)


def query(preds: str | os.PathLike, signature: str | os.PathLike, method: str = "pearson",
          column: str | None = None, types: list[str] | None = None, min_overlap: float = 0.5) -> list[Hit]:
    """Every (perturbation, gene) of the store, best match to the signature first."""
    if method not in METHODS:
        raise InputError("--method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    q = read_query(signature, column)
    p = open_preds(preds)
    ti = p.select_types(types)
    cols = np.array([i for i, lm in enumerate(p.landmarks.tolist()) if lm in q], dtype=np.int64)
    if len(cols) < min_overlap * len(p.landmarks):
        raise InputError(signature, f"only {len(cols)} of the store's {len(p.landmarks)} landmark ids are in the "
                                    "query (expected landmark Entrez ids)")
    qv = np.array([q[lm] for lm in p.landmarks[cols].tolist()])
    if np.unique(qv).size < 2:  # no ranking to match: Pearson scores 0 for everything, wtcs picks arbitrary sets
        raise InputError(signature, f"the query signature is constant (all {len(qv)} values on the store's "
                                    "landmarks are equal); expected a signature with up and down landmarks")
    found: list[Hit] = []
    for pos, block in p.chunks():
        for t in ti:
            s = scores(block[t][:, cols].astype(np.float64), qv, method)
            found += [Hit(str(p.types[t]), g, float(v), bool(m))
                      for g, v, m in zip(p.genes[pos].tolist(), s.tolist(), p.measured[t, pos].tolist())]
    found.sort(key=lambda h: -h.score)
    return found


def write_hits(hits: list[Hit], out: str | os.PathLike) -> None:
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("rank\tperturbation\tgene_id\tscore\tmeasured\n")
        for i, h in enumerate(hits, 1):
            f.write(f"{i}\t{h.perturbation}\t{h.gene}\t{h.score:.6g}\t{int(h.measured)}\n")
