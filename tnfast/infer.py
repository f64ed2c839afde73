"""`tnfast infer`: predictions of every gene and type, streamed chunk by chunk into Zarr.

Store layout (the output contract in DESIGN.md): ``predictions`` float32 (perturbation, gene,
landmark) chunked along genes; coordinates ``perturbation``, ``gene``, ``landmark`` (strings);
``measured`` bool (perturbation, gene); attributes tnfast version, run id, units and
``complete``, which stays false until the last chunk is written and the metadata consolidated.
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
from .data.bundle import TYPES, load_bundle
from .errors import InputError
from .runs import latest_run, read_run
from .train import TrainConfig, design_matrix, load_model


def infer(out: str | os.PathLike, run: str | os.PathLike | None = None, types: list[str] | None = None,
          chunk: int = 1024, overwrite: bool = False,
          progress: Callable[[int, int], None] = lambda done, total: None) -> Path:
    """Write predictions for all genes of the run's bundle to the Zarr store ``out``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(out, "already exists (pass --overwrite to replace it)")
    if chunk < 1:
        raise InputError("--chunk", f"must be >= 1, got {chunk}")
    run_dir = Path(run) if run is not None else latest_run()
    meta = read_run(run_dir)
    types = types or list(meta["types"])
    missing = [t for t in types if t not in meta["types"]]
    if missing:
        raise InputError(run_dir, f"the run has no model for {', '.join(missing)} (it has {', '.join(meta['types'])})")
    models = load_model(run_dir, meta)
    bundle = load_bundle(meta["data"], truth=False)
    x = design_matrix(bundle, TrainConfig(**meta["config"]))
    n, n_lm = bundle.n_genes, len(bundle.landmarks)

    if out.exists():
        shutil.rmtree(out)
    root = zarr.open_group(out, mode="w")
    root.attrs.update({"tnfast_version": __version__, "run_id": meta["run_id"],
                       "units": bundle.meta.get("units", "as in the training signatures"),
                       "complete": False})
    pred = root.create_array("predictions", shape=(len(types), n, n_lm), chunks=(len(types), chunk, n_lm),
                             dtype="float32", fill_value=np.nan,
                             dimension_names=("perturbation", "gene", "landmark"))
    for dim, labels in (("perturbation", types), ("gene", bundle.genes), ("landmark", bundle.landmarks)):
        # Variable-length strings: the zarr 3 string type with a specification.
        coord = root.create_array(dim, shape=(len(labels),), dtype=str, dimension_names=(dim,))
        coord[:] = np.asarray(labels, dtype=str)
    measured = np.zeros((len(types), n), bool)
    for i, t in enumerate(types):
        if t in bundle.signatures:
            measured[i, bundle.signatures[t].gene] = True
    root.create_array("measured", data=measured, dimension_names=("perturbation", "gene"))

    starts = range(0, n, chunk)
    for k, lo in enumerate(starts):
        hi = min(lo + chunk, n)
        pred[:, lo:hi] = np.stack([models[t].predict(x[lo:hi]) for t in types])
        progress(k + 1, len(starts))
    root.attrs["complete"] = True
    with warnings.catch_warnings():
        # xarray reads consolidated metadata; zarr warns that v3 has not standardised it yet.
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(out)
    return out


def parse_types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    got = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in got if v not in TYPES]
    if bad or not got:
        raise InputError("--types", f"expected a comma-separated subset of {','.join(TYPES)}, got {value!r}")
    return got
