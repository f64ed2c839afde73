"""`tnfast infer`: predictions of every gene and type, streamed chunk by chunk into Zarr.

Store layout (the output contract in DESIGN.md): ``predictions`` float32 (perturbation, gene,
landmark) chunked along genes; coordinates ``perturbation``, ``gene``, ``landmark`` (strings);
``measured`` bool (perturbation, gene); ``done`` uint8 (one entry per gene chunk, its own Zarr
chunk); attributes tnfast version, run id, units, chunk size and ``complete``.

Crash safety: zarr writes each chunk file atomically (temporary file + rename), and ``done[k]``
is set only after prediction chunk k is written, so after a SIGKILL at any moment every chunk
marked done is whole; ``--resume`` recomputes the others. ``complete`` turns true, and the
metadata is consolidated, only when every chunk is done. Under torchrun each rank writes a
disjoint, contiguous block of chunks of the same store.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from . import __version__
from .data.bundle import load_bundle
from .distributed import barrier, my_range, world
from .errors import InputError
from .preds import STORE_FORMAT, STORE_VERSION, gene_positions, parse_types  # noqa: F401 (re-exported)
from .preds import labels as coord_labels
from .runs import latest_run, read_run
from .predict import ALL_SPLITS, load_predictor


def infer(out: str | os.PathLike, run: str | os.PathLike | None = None, types: list[str] | None = None,
          genes: str | os.PathLike | None = None, chunk: int = 1024, overwrite: bool = False,
          resume: bool = False, progress: Callable[[int, int], None] = lambda done, total: None,
          device: str = "auto") -> Path:
    """Write predictions for the run's genes (all, or those listed in ``genes``) to the Zarr store ``out``.

    Every measured signature of the bundle may serve as an input for the gene's other types
    (:mod:`tnfast.predict`); ``device``: auto, cpu or cuda."""
    out = Path(out)
    if chunk < 1:
        raise InputError("--chunk", f"must be >= 1, got {chunk}")
    run_dir = Path(run) if run is not None else latest_run()
    meta = read_run(run_dir)
    types = types or list(meta["types"])
    missing = [t for t in types if t not in meta["types"]]
    if missing:
        raise InputError(run_dir, f"the run has no model for {', '.join(missing)} (it has {', '.join(meta['types'])})")
    bundle = load_bundle(meta["data"], truth=False)
    idx = np.arange(bundle.n_genes) if genes is None else gene_positions(genes, bundle.genes, f"run {meta['run_id']}")
    labels = {"perturbation": np.array(types), "gene": bundle.genes[idx], "landmark": bundle.landmarks}
    n_chunks = -(-len(idx) // chunk)
    fresh = _check_store(out, meta["run_id"], labels, chunk, overwrite, resume)

    rank, size = world()
    if rank == 0 and fresh:
        _create_store(out, meta["run_id"], bundle, idx, labels, chunk)
    barrier()
    root = zarr.open_group(out, mode="r+")
    pred, done = root["predictions"], root["done"]
    have = done[:].astype(bool)
    todo = [k for k in my_range(n_chunks, rank, size) if not have[k]]
    if todo:
        predictor = load_predictor(run_dir, bundle, inputs=ALL_SPLITS, device=device)
    finished = int(have.sum())
    for k in todo:
        rows = idx[k * chunk:(k + 1) * chunk]
        pred[:, k * chunk:k * chunk + len(rows)] = predictor.predict_types(types, rows)
        done[k] = 1  # after the chunk itself: a chunk marked done is whole
        finished += 1
        progress(finished, n_chunks)
    barrier()
    if rank == 0:
        if not done[:].all():
            raise InputError(out, "some chunks are still missing (a rank failed?); run again with --resume")
        root.attrs["complete"] = True
        with warnings.catch_warnings():
            # xarray reads consolidated metadata; zarr warns that v3 has not standardised it yet.
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            zarr.consolidate_metadata(out)
    progress(n_chunks, n_chunks)
    return out


def _check_store(out: Path, run_id: str, labels: dict, chunk: int, overwrite: bool, resume: bool) -> bool:
    """Decide, identically on every rank, whether to start a new store (True) or continue one."""
    if not out.exists():
        return True
    if not (out / "zarr.json").is_file():
        raise InputError(out, "exists and is not a Zarr store; refusing to replace it")
    if overwrite:
        return True
    if not resume:
        raise InputError(out, "already exists (pass --resume to continue it or --overwrite to replace it)")
    try:
        root = zarr.open_group(out, mode="r")
        attrs = dict(root.attrs)
        same_labels = all(np.array_equal(coord_labels(root[k]), v.astype(str)) for k, v in labels.items())
    except Exception as e:  # a damaged store: one line, not a zarr traceback
        raise InputError(out, f"cannot be resumed ({type(e).__name__}: {e}); use --overwrite") from None
    if attrs.get("format") != STORE_FORMAT or attrs.get("version", 0) > STORE_VERSION:
        raise InputError(out, "is not a tnfast predictions store this version can resume")
    if attrs.get("run_id") != run_id or attrs.get("chunk") != chunk or not same_labels:
        raise InputError(out, f"was started by run {attrs.get('run_id')} with chunk {attrs.get('chunk')} and other "
                              "genes or types; --resume needs the same run, --chunk, --genes and --types")
    return False


def _create_store(out: Path, run_id: str, bundle, idx: np.ndarray, labels: dict, chunk: int) -> None:
    if out.exists():
        shutil.rmtree(out)
    root = zarr.open_group(out, mode="w")
    root.attrs.update({"format": STORE_FORMAT, "version": STORE_VERSION, "tnfast_version": __version__,
                       "run_id": run_id, "units": bundle.meta.get("units", "as in the training signatures"),
                       "chunk": chunk, "complete": False})
    n_types, n, n_lm = (len(v) for v in labels.values())
    root.create_array("predictions", shape=(n_types, n, n_lm), chunks=(n_types, chunk, n_lm), dtype="float32",
                      fill_value=np.nan, dimension_names=tuple(labels))
    for dim, values in labels.items():
        # Variable-length strings: the zarr 3 string type with a specification.
        coord = root.create_array(dim, shape=(len(values),), dtype=str, dimension_names=(dim,))
        coord[:] = values.astype(str)
    measured = np.zeros((n_types, len(bundle.genes)), bool)
    for i, t in enumerate(labels["perturbation"].tolist()):
        if t in bundle.signatures:
            measured[i, bundle.signatures[t].gene] = True
    root.create_array("measured", data=measured[:, idx], dimension_names=("perturbation", "gene"))
    root.create_array("done", shape=(-(-n // chunk),), chunks=(1,), dtype="uint8", fill_value=0,
                      dimension_names=("chunk",))
