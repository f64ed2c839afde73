"""Where runs live and how they are found.

`tnfast train` writes each run to its own directory under the runs root: ``$TNFAST_RUNS`` if
set, else ``./runs`` in the working directory. A run directory is complete when its
``run.json`` exists (written last); `tnfast infer` without --run takes the newest complete one.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError
from .metrics import pearson_delta, row_pearson

RUN_FORMAT = "tnfast-run"
RUN_VERSION = 1


def runs_root() -> Path:
    return Path(os.environ.get("TNFAST_RUNS", "runs"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def latest_run() -> Path:
    root = runs_root()
    runs = sorted(p.parent for p in root.glob("*/run.json")) if root.is_dir() else []
    if not runs:
        raise InputError(root, "no complete run found; run `tnfast train` first or pass --run DIR")
    return max(runs, key=lambda p: (json.loads((p / "run.json").read_text()).get("created", 0), p.name))


def read_run(path: str | os.PathLike) -> dict:
    d = Path(path)
    f = d / "run.json"
    if not f.is_file():
        raise InputError(d, "not a complete tnfast run directory (no run.json)")
    try:
        run = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f, f"invalid JSON ({e.msg})", place=f"line {e.lineno}") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        raise InputError(f, f"expected \"format\": \"{RUN_FORMAT}\"")
    if not isinstance(run.get("version"), int) or run["version"] > RUN_VERSION:
        raise InputError(f, f"run format version {run.get('version')!r}; this tnfast reads up to {RUN_VERSION}")
    return run


def _scores(pred: np.ndarray, truth: np.ndarray, mean: np.ndarray) -> dict:
    return {"n": len(truth), "pcc": float(row_pearson(pred, truth).mean()),
            "pearson_delta": float(pearson_delta(pred, truth, mean).mean()),
            "mse": float(((pred - truth) ** 2).mean())}


def split_scores(bundle, predict: Callable[[str, np.ndarray], np.ndarray], types: Sequence[str],
                 splits: Sequence[str] = ("valid", "test")) -> dict:
    """What a run records about itself: per type and split, PCC, PearsonΔ and MSE of the model
    (``predict(type, gene indices) -> (n, L)``), of the training-mean signature and, on synthetic
    data, of the noise-free truth (the ceiling)."""
    summary: dict = {}
    for t in types:
        s = bundle.signatures[t]
        mean = s.values[s.rows("train")].mean(axis=0)
        summary[t] = {}
        for split in splits:
            rows = s.rows(split)
            if not len(rows):
                continue
            truth, genes = s.values[rows], s.gene[rows]
            summary[t][split] = {"model": _scores(predict(t, genes), truth, mean),
                                 "mean": _scores(np.broadcast_to(mean, truth.shape), truth, mean)}
            if t in bundle.truth:
                summary[t][split]["oracle"] = _scores(np.asarray(bundle.truth[t][genes]), truth, mean)
    return summary


def run_record(run_id: str, model: str, data: Path, types: Sequence[str], config: dict, metrics: dict,
               **extra) -> str:
    """The text of run.json (written last: its presence marks a complete run)."""
    run = {"format": RUN_FORMAT, "version": RUN_VERSION, "run_id": run_id, "created": time.time(),
           "tnfast": __version__, "model": model, "data": str(data), "types": list(types),
           "config": config, "metrics": metrics, **extra}
    return json.dumps(run, indent=2) + "\n"
