"""`tnfast train --model ridge`: ridge regression per type on the fixed design matrix.

A linear model from the multiplex network embedding and the gene features (tnfast.design) to
the 978-vector, its penalty chosen on the valid split. Seconds to train at genome scale; it is
the baseline TranscriptionNet must beat, and what `tnfast evaluate` calls ``ridge``.

Run directory: run.json (written last, marks completion), model.pt (tensors only;
torch.load(weights_only=True)), embedding.npy (the network embedding the weights read).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_dir
from .data.bundle import TYPES, load_bundle
from .design import DesignConfig, design_matrix, network_embedding
from .errors import InputError
from .ridge import Ridge, fit_ridge
from .runs import bundle_fingerprint, new_run_id, run_record, runs_root, save_embedding, split_scores

MODEL_KIND = "ridge-embedding"


def train_ridge(data: str | os.PathLike, out: str | os.PathLike | None = None, cfg: DesignConfig = DesignConfig(),
                progress: Callable[[str], None] = lambda msg: None) -> tuple[Path, dict]:
    """Fit on the bundle at ``data``; returns (run directory, summary metrics per type and split)."""
    data = Path(data).resolve()
    if out is not None and Path(out).exists():  # before the work; a run is never replaced
        raise InputError(out, "already exists (choose another --out)")
    bundle = load_bundle(data)
    if not bundle.signatures:
        raise InputError(data, "has no signatures to train on (import some with --signatures)")
    progress("embedding the multiplex networks")
    embedding = network_embedding(bundle, cfg)
    x = design_matrix(bundle, cfg, embedding)
    models: dict[str, Ridge] = {}
    for t in TYPES:
        s = bundle.signatures.get(t)
        if s is None:
            continue
        tr, va = s.rows("train"), s.rows("valid")
        if len(tr) < 2:
            raise InputError(data, f"{t} has {len(tr)} training signatures; need at least 2")
        progress(f"fitting {t} on {len(tr)} genes")
        models[t] = fit_ridge(x[s.gene[tr]], s.values[tr], x[s.gene[va]], s.values[va])
    summary = split_scores(bundle, lambda t, genes: models[t].predict(x[genes]), list(models))
    for t, m in models.items():
        summary[t]["alpha"] = m.alpha
    run_id = new_run_id()
    out = Path(out) if out is not None else runs_root() / run_id
    with atomic_dir(out) as tmp:
        torch.save({f"{t}.{k}": torch.from_numpy(np.asarray(getattr(m, k)))
                    for t, m in models.items() for k in ("weight", "x_mean", "y_mean")}, tmp / "model.pt")
        if embedding is not None:
            save_embedding(tmp, embedding)
        (tmp / "run.json").write_text(run_record(run_id, MODEL_KIND, data, list(models), asdict(cfg), summary,
                                                   bundle=bundle_fingerprint(bundle)))
    return out, summary


def load_ridge(run_dir: Path, run: dict) -> dict[str, Ridge]:
    """The per-type ridge models of a run."""
    try:
        tensors = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: one line, not a traceback
        raise InputError(run_dir / "model.pt", f"cannot load model weights ({type(e).__name__}: {e})") from None
    models = {}
    for t in run["types"]:
        try:
            w, xm, ym = (tensors[f"{t}.{k}"].numpy() for k in ("weight", "x_mean", "y_mean"))
        except KeyError as e:
            raise InputError(run_dir / "model.pt", f"missing tensor {e.args[0]}") from None
        models[t] = Ridge(w, xm, ym, float(run["metrics"][t]["alpha"]))
    return models
