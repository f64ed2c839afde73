"""`tnfast infer`: predictions of every gene and type, streamed chunk by chunk into Zarr.

Store layout (the output contract in DESIGN.md): ``predictions`` float32 (perturbation, gene,
landmark) chunked along genes; coordinates ``perturbation``, ``gene``, ``landmark`` (strings);
``measured`` bool (perturbation, gene); ``done`` uint8 (one entry per gene chunk, its own Zarr
chunk); attributes tnfast version, run id, units, chunk size and ``complete``.

Crash safety: zarr writes each chunk file atomically (temporary file + rename), and ``done[k]``
is set only after prediction chunk k is written, so after a SIGKILL at any moment every chunk
marked done is whole; ``--resume`` removes the temporary files a killed writer left behind and
recomputes the chunks not marked done. ``complete`` turns true, and the
metadata is consolidated, only when every chunk is done. Under torchrun each rank writes a
disjoint, contiguous block of chunks of the same store.

Start-up cost (the whole-genome command is a few seconds of prediction on a GPU, so the fixed
costs matter): this module imports neither torch nor zarr at import time. :func:`infer` first
starts reading the bundle on a thread (numpy only, mostly without the GIL), then imports torch,
which takes seconds; the network embedding is the run's saved one, not recomputed; CUDA starts on
another thread meanwhile (:func:`tnfast.predict.warm_device`). Chunks are written by a few
threads while the next ones are predicted.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import __version__
from .data.bundle import Bundle, load_bundle
from .errors import InputError
from .preds import STORE_FORMAT, STORE_VERSION, gene_positions, parse_types  # noqa: F401 (re-exported)
from .preds import labels as coord_labels
from .runs import latest_run, read_run

WRITERS = 4  # chunk writes in flight while the next chunks are predicted


def infer(out: str | os.PathLike, run: str | os.PathLike | None = None, types: list[str] | None = None,
          genes: str | os.PathLike | None = None, chunk: int = 1024, overwrite: bool = False,
          resume: bool = False, progress: Callable[[int, int], None] = lambda done, total: None,
          device: str = "auto") -> Path:
    """Write predictions for the run's genes (all, or those listed in ``genes``) to the Zarr store ``out``.

    Every measured signature of the bundle may serve as an input for the gene's other types
    (:mod:`tnfast.predict`); ``device``: auto, cpu or cuda. ``progress(done, total)`` is called
    as each chunk is stored, from the thread that wrote it (one call at a time), and once more
    at the end."""
    out = Path(out)
    if chunk < 1:
        raise InputError("--chunk", f"must be >= 1, got {chunk}")
    run_dir = Path(run) if run is not None else latest_run()
    meta = read_run(run_dir)
    types = types or list(meta["types"])
    missing = [t for t in types if t not in meta["types"]]
    if missing:
        raise InputError(run_dir, f"the run has no model for {', '.join(missing)} (it has {', '.join(meta['types'])})")
    prefetch = _Prefetch(meta)  # the bundle, while torch is imported
    from .distributed import barrier, my_range, world
    from .predict import ALL_SPLITS, RIDGE, load_predictor, warm_device

    if meta.get("model") != RIDGE:
        warm_device(device)  # CUDA starts on a thread too, while zarr is imported
    import zarr

    bundle = prefetch.bundle()
    idx = np.arange(bundle.n_genes) if genes is None else gene_positions(genes, bundle.genes, f"run {meta['run_id']}")
    labels = {"perturbation": np.array(types), "gene": bundle.genes[idx], "landmark": bundle.landmarks}
    n_chunks = -(-len(idx) // chunk)
    fresh = _check_store(out, meta["run_id"], labels, chunk, overwrite, resume)

    rank, size = world()
    if rank == 0:
        if fresh:
            _create_store(out, meta["run_id"], bundle, idx, labels, chunk)
        else:
            _remove_partial_writes(out)
    barrier()
    root = zarr.open_group(out, mode="r+")
    pred, done = root["predictions"], root["done"]
    have = done[:].astype(bool)
    todo = [k for k in my_range(n_chunks, rank, size) if not have[k]]
    if todo:
        try:
            predictor = load_predictor(run_dir, bundle, inputs=ALL_SPLITS, device=device, run=meta)
        except BaseException:
            if fresh and rank == 0:  # the store was made for this call and holds no prediction yet
                shutil.rmtree(out, ignore_errors=True)
            raise
    finished = int(have.sum())
    lock = threading.Lock()

    def write(k: int, values: np.ndarray) -> None:
        nonlocal finished
        pred[:, k * chunk:k * chunk + values.shape[1]] = values
        done[k] = 1  # after the chunk itself: a chunk marked done is whole
        with lock:
            finished += 1
            progress(finished, n_chunks)

    # Chunks are compressed and written by a few threads while the next chunks are predicted
    # (zstd and file writes release the GIL): on a GPU the writes would otherwise cost more
    # than the predictions. At most `writers` chunks wait for their write, so memory stays
    # bounded by the chunk size; each chunk's own write-then-mark order is kept. A write
    # error is raised here, at the latest once every submitted write has ended.
    writers = max(1, min(WRITERS, len(todo)))
    with ThreadPoolExecutor(writers, thread_name_prefix="tnfast-infer-write") as pool:
        pending: deque = deque()
        for k in todo:
            values = predictor.predict_types(types, idx[k * chunk:(k + 1) * chunk])
            while len(pending) >= writers:
                pending.popleft().result()
            pending.append(pool.submit(write, k, values))
        while pending:
            pending.popleft().result()
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


class _Prefetch:
    """The run's bundle read on a thread: torch-free work that runs while the main thread imports torch."""

    def __init__(self, meta: dict):
        self._bundle: Future = Future()
        threading.Thread(target=self._run, args=(meta,), name="tnfast-infer-prefetch", daemon=True).start()

    def bundle(self) -> Bundle:
        return self._bundle.result()  # load_bundle's own error, if it failed

    def _run(self, meta: dict) -> None:
        try:
            self._bundle.set_result(load_bundle(meta["data"], truth=False))
        except BaseException as e:  # noqa: BLE001 (raised in the main thread)
            self._bundle.set_exception(e)


def _check_store(out: Path, run_id: str, labels: dict, chunk: int, overwrite: bool, resume: bool) -> bool:
    """Decide, identically on every rank, whether to start a new store (True) or continue one."""
    import zarr

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


def _remove_partial_writes(out: Path) -> None:
    """Delete the temporary files of writes a kill interrupted: zarr's LocalStore writes a chunk
    as ``<key>.<uuid hex>.partial`` and renames it, so a SIGKILL can leave one beside the chunks."""
    for p in out.rglob("*.partial"):
        if p.is_file():
            p.unlink()


def _create_store(out: Path, run_id: str, bundle, idx: np.ndarray, labels: dict, chunk: int) -> None:
    import zarr

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
