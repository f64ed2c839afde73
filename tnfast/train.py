"""`tnfast train`: fit a model on a bundle and write a run directory.

The model trained here today is ridge regression, per perturbation type, from a fixed
multiplex network embedding (tnfast.embed) and the bundle's gene features to the 978-vector;
the penalty is chosen on the valid split. It is a real, honest model and the baseline the
TranscriptionNet model (GAT encoder + FunDNN + GenSAN) must beat.

Run directory: run.json (config, data path, summary metrics; written last, marks completion),
model.pt (tensors only; torch.load(weights_only=True)).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic import atomic_dir
from .data.bundle import TYPES, Bundle, load_bundle
from .embed import multiplex_embedding
from .errors import InputError
from .metrics import pearson_delta, row_pearson
from .ridge import Ridge, fit_ridge
from .runs import RUN_FORMAT, RUN_VERSION, new_run_id, runs_root


@dataclass
class TrainConfig:
    embed_dim: int = 64
    hops: int = 3
    seed: int = 0


def design_matrix(bundle: Bundle, cfg: TrainConfig) -> np.ndarray:
    """(n_genes, p) inputs of every gene: network embedding, then standardised features + presence."""
    parts = []
    if bundle.networks:
        parts.append(multiplex_embedding(bundle.networks, cfg.embed_dim, cfg.hops, cfg.seed))
    f = bundle.features
    if f is not None:
        mu = f.values[f.present].mean(axis=0)
        sd = f.values[f.present].std(axis=0) + 1e-8
        z = np.where(f.present[:, None], (f.values - mu) / sd, 0.0).astype(np.float32)
        parts += [z / np.sqrt(z.shape[1]), f.present[:, None].astype(np.float32)]
    if not parts:
        raise InputError(bundle.meta.get("name", "bundle"), "has neither networks nor features to learn from")
    return np.concatenate(parts, axis=1)


def _scores(pred: np.ndarray, truth: np.ndarray, mean: np.ndarray) -> dict:
    return {"n": len(truth), "pcc": float(row_pearson(pred, truth).mean()),
            "pearson_delta": float(pearson_delta(pred, truth, mean).mean()),
            "mse": float(((pred - truth) ** 2).mean())}


def train(data: str | os.PathLike, out: str | os.PathLike | None = None, cfg: TrainConfig = TrainConfig(),
          progress: Callable[[str], None] = lambda msg: None) -> tuple[Path, dict]:
    """Fit on the bundle at ``data``; returns (run directory, summary metrics per type and split)."""
    data = Path(data).resolve()
    bundle = load_bundle(data)
    if not bundle.signatures:
        raise InputError(data, "has no signatures to train on (import some with --signatures)")
    progress("embedding the multiplex networks")
    x = design_matrix(bundle, cfg)
    tensors: dict[str, torch.Tensor] = {}
    summary: dict = {}
    for t in TYPES:
        s = bundle.signatures.get(t)
        if s is None:
            continue
        tr, va = s.rows("train"), s.rows("valid")
        if len(tr) < 2:
            raise InputError(data, f"{t} has {len(tr)} training signatures; need at least 2")
        progress(f"fitting {t} on {len(tr)} genes")
        model = fit_ridge(x[s.gene[tr]], s.values[tr], x[s.gene[va]], s.values[va])
        tensors.update({f"{t}.{k}": torch.from_numpy(np.asarray(getattr(model, k)))
                        for k in ("weight", "x_mean", "y_mean")})
        summary[t] = {"alpha": model.alpha}
        for split in ("valid", "test"):
            rows = s.rows(split)
            if len(rows):
                truth = s.values[rows]
                mean = np.broadcast_to(model.y_mean, truth.shape)
                summary[t][split] = {"model": _scores(model.predict(x[s.gene[rows]]), truth, model.y_mean),
                                     "mean": _scores(mean, truth, model.y_mean)}
                if t in bundle.truth:  # synthetic data: the noise-free signal is the ceiling
                    oracle = np.asarray(bundle.truth[t][s.gene[rows]])
                    summary[t][split]["oracle"] = _scores(oracle, truth, model.y_mean)
    run_id = new_run_id()
    out = Path(out) if out is not None else runs_root() / run_id
    with atomic_dir(out) as tmp:
        torch.save(tensors, tmp / "model.pt")
        run = {"format": RUN_FORMAT, "version": RUN_VERSION, "run_id": run_id, "created": time.time(),
               "tnfast": __version__, "model": "ridge-embedding", "data": str(data),
               "types": list(summary), "config": asdict(cfg), "metrics": summary}
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return out, summary


def load_model(run_dir: Path, run: dict) -> dict[str, Ridge]:
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
