"""Predictions of a run's model for any genes of its bundle: the one place that turns a run into numbers.

`tnfast infer` (all genes, streamed to Zarr) and `tnfast evaluate` (the genes of a split) both
need the same steps: read the run, rebuild its inputs from the bundle, apply the model.
:class:`Predictor` does the expensive part once (the ridge design matrix, or TranscriptionNet's
full-graph encoder pass), however many types or chunks follow.

Inputs of TranscriptionNet's GenSAN: a gene's measured signatures of the *other* types, taken
from the splits named by ``inputs``. `tnfast evaluate` uses the splits the model trained on
(the training split, or train and valid when its members validated on folds of their own:
``train.member_valid``), so evaluated genes are predicted exactly as unmeasured genes are;
`tnfast infer` uses every measured signature, as a user predicting RNAi for a gene whose
CRISPR signature was measured would want. A gene's own target signature is never a GenSAN
input. One exception, by design of the residual correction (Correct and Smooth): the training
genes' residuals and signatures are diffused over the networks, and a gene's own come back to it
(personalised PageRank keeps a self term), so a *training* gene's prediction of its own
measured type is a fitted value, pulled toward its measurement (the bundle's split tells
which). Valid, test and unmeasured genes never enter the diffusion: their predictions hold no
trace of their own measurement, and `tnfast evaluate` scores only them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.bundle import TYPES, Bundle, load_bundle
from .design import DesignConfig, design_matrix
from .errors import InputError
from .model import ModelDims, ensemble_predict, member_measurements
from .runs import check_same_bundle, latest_run, load_embedding, read_run
from .train import MODEL_KIND as TRANSCRIPTIONNET
from .train import autocast, build_graph, load_members, resolve_device, training_splits
from .train_config import from_dict
from .train_ridge import MODEL_KIND as RIDGE
from .train_ridge import load_ridge

# Model kinds this tnfast can load (run.json "model").
SUPPORTED_MODELS = (TRANSCRIPTIONNET, RIDGE)
ALL_SPLITS = ("train", "valid", "test")


@dataclass
class Predictor:
    run_dir: Path
    run: dict  # run.json
    bundle: Bundle
    types: list[str]
    fn: Callable[[list[str], np.ndarray], np.ndarray]  # (types, gene indices (n,)) -> (len(types), n, L)
    x: np.ndarray | None = None  # ridge runs: their design matrix (the baselines reuse it)

    def predict_types(self, types: Sequence[str], genes_idx: np.ndarray) -> np.ndarray:
        """(len(types), n, L) float32 predictions for bundle gene indices ``genes_idx``."""
        missing = [t for t in types if t not in self.types]
        if missing:
            raise InputError(self.run_dir, f"the run has no model for {', '.join(missing)} "
                                           f"(it has {', '.join(self.types)})")
        idx = np.asarray(genes_idx)
        if idx.size and idx.dtype.kind not in "iu":  # 0.7 would silently be gene 0
            raise TypeError(f"gene indices must be integers, got {idx.dtype}")
        return self.fn(list(types), idx.astype(np.int64))

    def predict(self, ptype: str, genes_idx: np.ndarray) -> np.ndarray:
        """(n, L) float32 predictions of type ``ptype``."""
        return self.predict_types([ptype], genes_idx)[0]


def _ridge(run_dir: Path, run: dict, bundle: Bundle) -> Predictor:
    models = load_ridge(run_dir, run)
    try:
        cfg = DesignConfig(**run["config"])
    except TypeError as e:
        raise InputError(run_dir / "run.json", f"config does not match this tnfast ({e})") from None
    x = design_matrix(bundle, cfg, load_embedding(run_dir, bundle, cfg.embed_dim) if bundle.networks else None)
    fn = lambda types, idx: np.stack([models[t].predict(x[idx]) for t in types]).astype(np.float32)  # noqa: E731
    return Predictor(run_dir, run, bundle, list(models), fn, x)


def warm_device(device: str = "auto") -> None:
    """Start the GPU's one-off set-up on a background thread, so that it overlaps the CPU work
    before the first CUDA call (imports, reading the bundle, building the graph): the CUDA
    context, cuBLAS, and Triton's per-process key (a hash of its ~0.5 GB compiler library,
    computed at the first kernel launch). Each step is best effort (an error is left for the
    real call to report); :func:`_transcriptionnet` waits for the thread before the encoder
    pass. No-op on the CPU, and after the first call for a device.
    """
    try:
        dev = resolve_device(device)
    except InputError:
        return
    if dev.type != "cuda":
        return
    with _warm_lock:
        if dev in _warm:
            return
        _warm[dev] = th = threading.Thread(target=_warm_up, args=(dev,), name="tnfast-warm-device", daemon=True)
    th.start()


_warm: dict = {}  # device -> its warm-up thread
_warm_lock = threading.Lock()


def _warm_up(dev: torch.device) -> None:
    def blas():
        a = torch.ones(8, 8, device=dev)
        (a @ a).bfloat16() @ a.bfloat16()

    def triton():
        from triton.runtime.cache import triton_key  # an lru_cache: computed once per process

        triton_key()

    for step in (lambda: torch.zeros(1, device=dev), blas, triton):
        try:
            step()
        except Exception:  # noqa: BLE001 (best effort; the real call reports a real problem)
            pass


def _wait_warm(dev: torch.device) -> None:
    th = _warm.get(dev)
    if th is not None:
        th.join()


def _transcriptionnet(run_dir: Path, run: dict, bundle: Bundle, inputs: Sequence[str] | None, device: str) -> Predictor:
    cfg = from_dict(run["config"], str(run_dir / "run.json"))
    dev = resolve_device(device)
    dim = cfg.model.structural_dim
    structural = load_embedding(run_dir, bundle, dim) if dim and bundle.networks else None
    graph = build_graph(bundle, cfg, dev, structural)
    dims = ModelDims.from_graph(graph, len(bundle.landmarks)).to_dict()
    if dims != run.get("dims"):
        raise InputError(run_dir / "run.json", f"the model was trained on data of shape {run.get('dims')}; "
                                               f"the bundle {run['data']} now gives {dims}")
    members = load_members(run_dir, bundle, graph, cfg, dev)
    meas = member_measurements(bundle, training_splits(cfg) if inputs is None else inputs, members, dev)
    _wait_warm(dev)  # no second thread doing the same one-off work as the first kernel launches
    with torch.no_grad(), autocast(dev, cfg.train.precision):
        triples = [(member, member.encode(graph), x) for member, x in zip(members, meas)]

    def fn(types: list[str], idx: np.ndarray) -> np.ndarray:
        with torch.no_grad(), autocast(dev, cfg.train.precision):
            pred = ensemble_predict(triples, torch.from_numpy(idx), graph)
        cols = torch.tensor([TYPES.index(t) for t in types], device=pred.device)
        return pred.index_select(1, cols).transpose(0, 1).cpu().numpy()

    return Predictor(run_dir, run, bundle, list(run["types"]), fn)


def load_predictor(run_dir: str | os.PathLike | None = None, bundle: Bundle | None = None,
                   truth: bool = False, inputs: Sequence[str] | None = None, device: str = "auto",
                   run: dict | None = None) -> Predictor:
    """Load the run at ``run_dir`` (default: the newest) with its bundle.

    ``bundle``: the run's bundle when the caller has loaded it already (it must be the same
    data); ``truth``: load the bundle's noise-free truth arrays too (memory-mapped);
    ``inputs``: the splits whose measurements TranscriptionNet may use (see the module doc;
    default: those it trained on, :func:`tnfast.train.training_splits`);
    ``device``: auto, cpu or cuda; ``run``: the run's run.json when the caller has read it already.
    """
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    run = read_run(run_dir) if run is None else run
    kind = run.get("model")
    if kind not in SUPPORTED_MODELS:
        raise InputError(run_dir / "run.json", f"model kind {kind!r} cannot be loaded by this tnfast "
                                               f"(it loads {', '.join(SUPPORTED_MODELS)}); "
                                               f"score its predictions with --preds")
    for key in ("types", "config", "data", "metrics"):
        if key not in run:
            raise InputError(run_dir / "run.json", f"missing field {key!r}")
    if kind != RIDGE:
        warm_device(device)
    if bundle is None:
        bundle = load_bundle(run["data"], truth=truth)
    check_same_bundle(run, bundle, run_dir / "run.json")
    if kind == RIDGE:
        return _ridge(run_dir, run, bundle)
    return _transcriptionnet(run_dir, run, bundle, inputs, device)
