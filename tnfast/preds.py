"""Reading a preds.zarr store (written by tnfast.infer): validated, chunk by chunk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data.bundle import TYPES
from .errors import InputError

if TYPE_CHECKING:  # imported where used: `tnfast infer` imports this module and zarr later
    import zarr

STORE_FORMAT = "tnfast-preds"
STORE_VERSION = 1


@dataclass
class Preds:
    path: Path
    predictions: zarr.Array  # (perturbation, gene, landmark)
    types: np.ndarray
    genes: np.ndarray
    landmarks: np.ndarray
    measured: np.ndarray  # (perturbation, gene) bool
    attrs: dict

    def chunks(self, genes: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(gene positions, values (types, k, landmarks)) one store chunk at a time.

        ``genes``: sorted positions to keep (default all); chunks without any are not read.
        """
        step = self.predictions.chunks[1]
        n = len(self.genes)
        for lo in range(0, n, step):
            pos = np.arange(lo, min(lo + step, n))
            if genes is not None:
                pos = pos[np.isin(pos, genes)]
                if not len(pos):
                    continue
            yield pos, self._read(lo, min(lo + step, n))[:, pos - lo]

    def _read(self, lo: int, hi: int) -> np.ndarray:
        """Genes lo..hi-1 of every type; a lost or damaged chunk is a one-line error, never NaN output."""
        try:
            block = self.predictions[:, lo:hi]
        except Exception as e:  # a truncated or garbled chunk file: zarr's codec error
            raise InputError(self.path, f"damaged store: cannot read the predictions of genes {lo}..{hi - 1} "
                                        f"({type(e).__name__}: {e}); run `tnfast infer` again") from None
        if np.isnan(block).any():
            raise InputError(self.path, f"damaged store: predictions of genes {lo}..{hi - 1} are missing (NaN; "
                                        "a lost chunk file?); run `tnfast infer` again")
        return block

    def select_genes(self, ids_file: str | os.PathLike) -> np.ndarray:
        return gene_positions(ids_file, self.genes, self.path)

    def select_types(self, types: list[str] | None) -> np.ndarray:
        if types is None:
            return np.arange(len(self.types))
        have = self.types.tolist()
        missing = [t for t in types if t not in have]
        if missing:
            raise InputError(self.path, f"has no {', '.join(missing)} predictions (it has {', '.join(have)})")
        return np.array([have.index(t) for t in types])


def labels(coord: zarr.Array) -> np.ndarray:
    """A string coordinate as a fixed-width str array (numpy cannot cast its StringDType directly)."""
    return np.array(coord[:].tolist(), dtype=str)


def gene_positions(ids_file: str | os.PathLike, universe: np.ndarray, source) -> np.ndarray:
    """Sorted positions in ``universe`` of the genes listed in a file; unknown ids are an error."""
    from .data.tables import read_id_list

    wanted = read_id_list(ids_file)
    if not len(wanted):
        raise InputError(ids_file, "lists no genes")
    index = {g: i for i, g in enumerate(universe.tolist())}
    unknown = [g for g in wanted.tolist() if g not in index]
    if unknown:
        ids_are = "gene id is" if len(unknown) == 1 else "gene ids are"
        raise InputError(ids_file, f"{len(unknown)} {ids_are} not in {source}, e.g. {unknown[0]!r}")
    return np.array(sorted(index[g] for g in wanted.tolist()), dtype=np.int64)


def open_preds(path: str | os.PathLike) -> Preds:
    """Open a complete store for reading; an incomplete or foreign one is a one-line error."""
    import zarr

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise InputError(path, "not a Zarr store (expected the output of `tnfast infer`)")
    try:
        root = zarr.open_group(path, mode="r")
        attrs = dict(root.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise InputError(path, f"not a tnfast predictions store (attribute format != {STORE_FORMAT!r})")
        if not isinstance(attrs.get("version"), int) or attrs["version"] > STORE_VERSION:
            raise InputError(path, f"store format version {attrs.get('version')!r}; this tnfast reads up to "
                                   f"{STORE_VERSION} (upgrade tnfast)")
        if not attrs.get("complete"):
            raise InputError(path, "is incomplete (an interrupted `tnfast infer`; finish it with --resume)")
        p = Preds(path, root["predictions"], *(labels(root[k]) for k in ("perturbation", "gene", "landmark")),
                  root["measured"][:], attrs)
    except InputError:
        raise
    except Exception as e:  # damaged metadata or arrays: one line, not a zarr traceback
        raise InputError(path, f"cannot read the store ({type(e).__name__}: {e})") from None
    if p.predictions.shape != (len(p.types), len(p.genes), len(p.landmarks)):
        raise InputError(path, "predictions do not match the perturbation, gene and landmark coordinates")
    if p.measured.shape != p.predictions.shape[:2] or p.measured.dtype != bool:
        raise InputError(path, f"'measured' is {p.measured.dtype} of shape {p.measured.shape}, expected bool of "
                               f"shape {p.predictions.shape[:2]} (perturbation, gene)")
    if p.predictions.chunks[1] < 1:  # zarr accepts a 0 in the chunk shape; reading gene chunks cannot
        raise InputError(path, f"predictions have chunk shape {p.predictions.chunks}, expected >= 1 gene a chunk")
    return p


def parse_types(value: str | None) -> list[str] | None:
    """``--types RNAi,OE`` -> ["RNAi", "OE"]; None -> None (all)."""
    if value is None:
        return None
    got = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in got if v not in TYPES]
    if bad or not got:
        raise InputError("--types", f"expected a comma-separated subset of {','.join(TYPES)}, got {value!r}")
    twice = next((t for i, t in enumerate(got) if t in got[:i]), None)
    if twice is not None:  # a store with a repeated coordinate cannot be exported or queried sensibly
        raise InputError("--types", f"{twice} given twice")
    return got
