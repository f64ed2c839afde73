"""Predictions of a run's model for any genes of its bundle: the one place that turns a run into numbers.

`tnfast infer` (all genes, streamed to Zarr) and `tnfast evaluate` (the genes of a split) both
need the same three steps: read the run, rebuild its inputs from the bundle (the design matrix
of the run's config), apply the per-type model. :class:`Predictor` holds them once, so the
design matrix (seconds at genome scale) is computed once however many types or chunks follow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.bundle import Bundle, load_bundle
from .errors import InputError
from .ridge import Ridge
from .runs import latest_run, read_run
from .train import TrainConfig, design_matrix, load_model

# Model kinds whose weights load_model understands (run.json "model").
SUPPORTED_MODELS = ("ridge-embedding",)


@dataclass
class Predictor:
    run_dir: Path
    run: dict  # run.json
    models: dict[str, Ridge]
    bundle: Bundle
    x: np.ndarray  # (n_genes, p) the run's design matrix

    @property
    def types(self) -> list[str]:
        return list(self.models)

    def predict(self, ptype: str, genes_idx: np.ndarray | slice) -> np.ndarray:
        """(n, L) float32 predictions of type ``ptype`` for bundle gene indices ``genes_idx``."""
        if ptype not in self.models:
            raise InputError(self.run_dir, f"the run has no model for {ptype} (it has {', '.join(self.models)})")
        return self.models[ptype].predict(self.x[genes_idx])


def load_predictor(run_dir: str | os.PathLike | None = None, bundle: Bundle | None = None,
                   truth: bool = False) -> Predictor:
    """Load the run at ``run_dir`` (default: the newest) with its bundle and design matrix.

    ``bundle``: the run's bundle when the caller has loaded it already (it must be the same
    data); ``truth``: load the bundle's noise-free truth arrays too (memory-mapped).
    """
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    run = read_run(run_dir)
    kind = run.get("model")
    if kind not in SUPPORTED_MODELS:
        raise InputError(run_dir / "run.json", f"model kind {kind!r} cannot be loaded by this tnfast "
                                               f"(it loads {', '.join(SUPPORTED_MODELS)}); "
                                               f"score its predictions with --preds")
    for key in ("types", "config", "data", "metrics"):
        if key not in run:
            raise InputError(run_dir / "run.json", f"missing field {key!r}")
    models = load_model(run_dir, run)
    if bundle is None:
        bundle = load_bundle(run["data"], truth=truth)
    try:
        cfg = TrainConfig(**run["config"])
    except TypeError as e:
        raise InputError(run_dir / "run.json", f"config does not match this tnfast ({e})") from None
    return Predictor(run_dir, run, models, bundle, design_matrix(bundle, cfg))

