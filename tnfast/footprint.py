"""Peak memory of `tnfast train` and `tnfast infer`, estimated before the bundle is loaded.

Torch-free (`tnfast infer` imports torch late on purpose): the bundle's shape comes from its
manifest and the headers of its .npz members, the model's size from the resolved configuration
as plain dicts (``RunConfig.to_dict()``, or run.json's "config").

What is held (CPU, float32; see tnfast/train.py, tnfast/infer.py, tnfast/model/, kernels/):
the bundle (per layer a CSR of 8 B per directed edge, features, signatures); the fixed
structural inputs (N x L*structural_dim); the model's stacked CSR (indices and weights, 8 B per
edge) and the kernels' cached plan (destination rows, the reverse CSR and its permutation:
12 B per edge); the parameters (training: with their gradients and AdamW's two moments); the
measured signatures (training: scaled and unscaled copies). What a training step adds: the
encoder's activations, kept for the backward pass (a few (L, N, C) tensors per GAT layer and
the fusion's (L+1, N, C)), the GAT backward's per-head edge temporaries, the sampled
reconstruction pairs' embeddings, and FunDNN + GenSAN activations for the batch (every block
of every recycle is kept for the backward pass). Prediction keeps no activations: one encoder
pass, then chunks of genes.

Calibration: peak RSS (``wait4``) of the real commands on the shared 2-core CPU machine
(2026-11-30), training 1 pretraining + 2 joint steps of the quick profile with the changes
listed, then `tnfast infer` (chunk 1024) of the same run; the estimate (RSS when the check runs,
plus the parts below) over the measured peak, in MiB:

=============================================  ==========  ==========  ==========  ========
bundle (genes, directed edges) / changes         train        est.      infer       est.
=============================================  ==========  ==========  ==========  ========
tiny (300, 8k)                                 885         1.00        482         1.04
small (3,000, 400k)                            1,049       0.94        692         0.96
small, 8 heads x 32, 2 GAT layers              1,358       0.96        690         1.13
small, batch 64                                843         0.96
small, batch 64, 4 col heads, 2 blocks, 3 rec. 1,295       0.94
full (26,945, 15.0M)                           2,214       1.00        1,245       1.14
full, 4 heads x 16, 2 GAT layers, batch 64     2,813       0.94        1,388       1.12
=============================================  ==========  ==========  ==========  ========

The counts are what the code allocates (above); the constants fitted on these runs are the
activations kept per GAT layer (6 (L, N, C) tensors), the edge temporaries (4 B x (2 x GAT
layers + 5) per directed edge) and torch's run-time buffers (:data:`_RUNTIME`).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

from .arm_effect import CLASSES as ARM_CLASSES
from .memory import format_count, memory_bound, peak_note, process_rss, require

__all__ = ["BundleShape", "bundle_shape", "model_parameters", "train_peak", "infer_peak", "ridge_peak", "check_train",
           "check_infer"]


class BundleShape(NamedTuple):
    n_genes: int
    n_landmarks: int
    layer_edges: tuple[int, ...]  # directed CSR entries per layer
    n_features: int
    n_signatures: int  # all types, all splits

    @property
    def edges(self) -> int:
        return sum(self.layer_edges)

    def describe(self) -> str:
        return (f"{self.n_genes:,} genes, {len(self.layer_edges)} layers, {format_count(self.edges // 2)} edges, "
                f"{self.n_signatures:,} signatures")


def _npz_rows(path: Path, member: str) -> int | None:
    """First dimension of one array of an .npz, from its header only."""
    from .data.estimate import npy_header

    try:
        with zipfile.ZipFile(path) as z, z.open(f"{member}.npy") as f:
            header = npy_header(f)
    except Exception:  # noqa: BLE001 (a damaged bundle: load_bundle says what is wrong)
        return None
    return int(header[0][0]) if header and header[0] else None


def bundle_shape(path: str | os.PathLike) -> BundleShape | None:
    """The sizes that matter for memory, without loading the bundle; None when it cannot be
    read this way (then load_bundle reports the problem)."""
    d = Path(path)
    try:
        m = json.loads((d / "bundle.json").read_text(encoding="utf-8"))
        n, n_lm = int(m["n_genes"]), int(m["n_landmarks"])
        layers, types, n_features = list(m.get("layers", [])), list(m.get("types", [])), int(m.get("features", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    edges = [_npz_rows(d / "networks" / f"{name}.npz", "indices") for name in layers]
    sigs = [_npz_rows(d / "signatures" / f"{t}.npz", "gene") for t in types]
    if None in edges or None in sigs:
        return None
    return BundleShape(n, n_lm, tuple(edges), n_features, sum(sigs))


SUBSPACE_RANK = 128  # tnfast.model.subspace.RANKS[-1], not imported: that module needs torch


def model_parameters(shape: BundleShape, m: dict) -> int:
    """Parameters plus buffers of TranscriptionNet(ModelConfig(**m), dims of ``shape``),
    counted from the config (tests check it against the real model)."""
    n, n_l, n_lm, t = shape.n_genes, len(shape.layer_edges), shape.n_landmarks, 3
    c, k, fd = m["gat_heads"] * m["gat_head_dim"], m["gat_layers"], m["fusion_dim"]
    feats = shape.n_features + 1 if (m["use_features"] and shape.n_features) else 0
    d_shared = m["gene_embedding_dim"] + feats
    n_struct = n_l * m["structural_dim"] if n_l else 0
    enc = (n * m["gene_embedding_dim"] + n_l * d_shared * c + n_l * (n_struct // max(n_l, 1)) * c + n_l * c
           + k * n_l * (c * c + 3 * c) + (d_shared + n_struct + 1) * c + 2 * c + (c + 1) * fd + fd
           + (c + 1) * m["embedding_dim"] + 1)
    dims, fun = [m["embedding_dim"], *m["fundnn_hidden"]], 0
    for a, b in zip(dims, dims[1:]):
        fun += (a + 1) * b + 2 * b
    fun = t * (fun + (dims[-1] + 1) * n_lm)
    rw, cw, lmd = m["row_heads"] * m["row_head_dim"], m["col_heads"] * m["col_head_dim"], m["landmark_dim"]
    block = (3 * 2 * n_lm + (n_lm + 1) * 3 * rw + (rw + 1) * n_lm + n_lm * lmd + (t + lmd + 1) * 3 * cw
             + (cw + 1) * t + (n_lm + 1) * m["ff_dim"] + (m["ff_dim"] + 1) * n_lm)
    gensan = t * 2 * n_lm + m["blocks"] * block
    # .get: a run saved before the option existed (its config lacks it) had no prior
    n_prior = (n_struct + feats) if m.get("ridge_prior") else 0
    prior = t * (n_prior * n_lm + n_prior + n_lm + 2) if n_prior else 0  # weight, x/y means, alpha, fitted
    rank = m.get("residual_rank", 0) if n_l else 0  # .get: as ridge_prior
    residual = t * (n * t * rank + rank * n_lm) if rank else 0  # coef, basis
    subspace = t * n_lm * SUBSPACE_RANK + t if m.get("output_subspace") else 0  # basis, rank; .get: as ridge_prior
    own = n + t * n_lm + t if m.get("own_landmark", True) else 0  # landmark, value, on; .get: the default
    arm = 3 * (n + n_lm) + t * len(ARM_CLASSES) * n_lm + t if m.get("arm_effect", True) else 0  # codes, shift, on
    typical = t * n_lm + t if m.get("typical_deviation", True) else 0  # value, on; .get: the default
    return (enc + fun + gensan + prior + residual + subspace + own + arm + typical
            + (2 * t * n_lm + t) + 2 * t)  # + scaler, gate, shrink


def _held(shape: BundleShape, m: dict) -> dict[str, float]:
    """Bytes held whether training or predicting: bundle, structural inputs, graph, kernel plan."""
    n, e, n_l = shape.n_genes, shape.edges, len(shape.layer_edges)
    f = shape.n_features if m["use_features"] else 0
    return {
        "bundle": 8 * n_l * (n + 1) + 8 * e + 4 * n * shape.n_features + 4 * shape.n_signatures * shape.n_landmarks
                  + 100 * n,
        "structural": 4 * n * n_l * m["structural_dim"] if n_l else 0,
        "graph": 8 * e + 8 * n_l * n + 4 * n * f + n_l * n,
    }


_RUNTIME = 150 << 20  # torch's own buffers and thread pools once it computes (beyond its import)
_TORCH_IMPORT = 200 << 20  # importing torch (and zarr), when the check runs before it: 185 + 8 MiB measured


def train_peak(shape: BundleShape, cfg: dict) -> dict[str, float]:
    """Bytes a training run adds to the process, by part (a dict; its values sum to the estimate)."""
    m, tc = cfg["model"], cfg["train"]
    n, e, n_l, n_lm = shape.n_genes, shape.edges, len(shape.layer_edges), shape.n_landmarks
    c, k, fd, ed = m["gat_heads"] * m["gat_head_dim"], m["gat_layers"], m["fusion_dim"], m["embedding_dim"]
    p = model_parameters(shape, m)
    out = _held(shape, m)
    lnc = n_l * n * c
    out["plan"] = 12 * e + 16 * n_l * n
    # weights, gradients, AdamW's two moments; an ensemble's members are trained one at a time,
    # then all held for scoring
    out["parameters"] = 16 * p + 4 * p * (tc.get("ensemble", 1) - 1)
    # members validating on folds of their own have scalers of their own: scoring holds a
    # scaled copy of the measurements per member
    copies = tc.get("ensemble", 1) if tc.get("member_valid") == "folds" else 1
    out["signatures"] = 12 * shape.n_signatures * n_lm + 4 * shape.n_signatures * n_lm * (copies - 1)
    step = 0.0
    if n_l:
        # per GAT layer: inputs (after dropout), h, the aggregate and the ELU kept for the backward;
        # the layer inputs and the fusion: (L+1, N, C) candidates normalised, their projection
        step += 4 * (6 * k * lnc + 3 * (lnc + n * c) + 2 * (n_l + 1) * n * fd)
        # per GAT layer its log-weights and aggregation plan kept; the backward's per-head edge temporaries
        step += 4 * e * (2 * k + 5)
        step += 4 * 3 * m["recon_edges"] * n_l * (1 + m["negatives_per_edge"]) * ed
    b = min(tc["batch_size"], shape.n_signatures)
    rw, cw = m["row_heads"] * m["row_head_dim"], m["col_heads"] * m["col_head_dim"]
    per_pass = (3 * n_lm * 8 + 3 * 3 * rw * 2 + n_lm * (3 + m["landmark_dim"]) * 2 + n_lm * cw * 4
                + 3 * m["ff_dim"] * 3)
    step += 4 * b * (3 * sum(m["fundnn_hidden"]) * 4 + 3 * n_lm * 4 + m["blocks"] * m["recycles"] * per_pass)
    rank = m.get("residual_rank", 0) if n_l else 0
    # after training, the residual correction's diffusions: (L*N, 2*T*rank) floats about 8 times
    # over (inputs, iterate, products, the stacked and permuted outputs); not at once with a step
    correction = 8 * 4 * n_l * n * 2 * 3 * rank
    out["step"] = max(step, correction)
    out["runtime"] = _RUNTIME
    return out


def infer_peak(shape: BundleShape, cfg: dict, chunk: int, writers: int = 4) -> dict[str, float]:
    """Bytes `tnfast infer` adds to the process (TranscriptionNet runs), by part."""
    m = cfg["model"]
    n, e, n_l, n_lm = shape.n_genes, shape.edges, len(shape.layer_edges), shape.n_landmarks
    c, fd, ed = m["gat_heads"] * m["gat_head_dim"], m["fusion_dim"], m["embedding_dim"]
    out = _held(shape, m)
    lnc = n_l * n * c
    out["plan"] = 4 * e + 4 * n_l * n
    k = cfg["train"].get("ensemble", 1)  # members held at once, each with its gene embeddings
    out["parameters"] = 4 * model_parameters(shape, m) * k
    copies = k if cfg["train"].get("member_valid") == "folds" else 1  # a scaled copy per scaler
    out["signatures"] = 4 * shape.n_signatures * n_lm * copies + 4 * n * ed * k
    step = 4 * (4 * lnc + 2 * (n_l + 1) * n * (c + fd)) + 12 * e if n_l else 0.0
    chunk = min(chunk, n)
    batch = min(chunk, 512)
    rw, cw = m["row_heads"] * m["row_head_dim"], m["col_heads"] * m["col_head_dim"]
    step += 4 * batch * (3 * max(m["fundnn_hidden"], default=0) * 2 + 3 * n_lm * 6 + 3 * rw * 3
                         + n_lm * cw * 3 + 3 * m["ff_dim"] * 2)
    step += 4 * 3 * n_lm * chunk * (writers + 2)  # chunks predicted, waiting for their write, compressed
    out["step"] = step
    out["runtime"] = _RUNTIME
    return out


def ridge_peak(shape: BundleShape, embed_dim: int = 64) -> dict[str, float]:
    """Bytes the ridge baseline adds (training or predicting): the bundle and its design matrix
    (multiplex embedding + features), with the embedding's working copies. Measured (MiB,
    training then `tnfast infer`): small 330 and 433, full 735 and 747; the estimate is 1.29 and
    0.99, 1.21 and 1.19 of that."""
    n, n_l = shape.n_genes, len(shape.layer_edges)
    out = _held(shape, {"use_features": True, "structural_dim": 0})
    del out["graph"]
    out["design"] = 4 * 4 * n * (n_l * embed_dim + shape.n_features + 1) + 8 * shape.edges
    out["runtime"] = _RUNTIME
    return out


def _check(parts: dict[str, float], device: str, where, what: str, max_memory: int | None, progress) -> None:
    if device == "cuda":  # the step's tensors, the parameters and the kernel plan live on the GPU
        parts = {k: v for k, v in parts.items() if k not in ("step", "plan", "parameters")}
    bound = memory_bound(max_memory)
    if "torch" not in sys.modules:  # every path imports it later (infer on purpose late)
        parts = {**parts, "torch": _TORCH_IMPORT}
    need = process_rss() + int(sum(parts.values()))
    require(need, bound, where, what)
    if progress is not None:
        progress(peak_note(need, bound))


def check_train(data: str | os.PathLike, cfg: dict, device: str, max_memory: int | None, ridge: bool = False,
                progress=None) -> None:
    """Refuse a training run whose estimated peak (this process's RSS now plus
    :func:`train_peak`) exceeds the bound, before the bundle is loaded or a run directory made.
    On CUDA only what the host holds counts. Skipped when the bundle or config cannot be read
    this way (training reports the problem itself)."""
    shape = bundle_shape(data)
    if shape is None:
        return
    try:
        if ridge:
            parts, what = ridge_peak(shape, cfg.get("embed_dim", 64)), f"to fit ridge ({shape.describe()})"
        else:
            parts = train_peak(shape, cfg)
            what = f"to train ({shape.describe()}; batch {cfg['train']['batch_size']})"
    except (KeyError, TypeError, ValueError):
        return
    _check(parts, device, data, what, max_memory, progress)


def check_infer(run: dict, chunk: int, device: str, max_memory: int | None, progress=None) -> None:
    """Refuse `tnfast infer` of the run (its run.json) when its estimated peak exceeds the bound,
    before the bundle is loaded or the store created. ``device`` as given (auto counts as CPU:
    torch is not imported to find out)."""
    data = run.get("data")
    shape = bundle_shape(data) if isinstance(data, str) else None
    if shape is None or chunk < 1:  # (infer refuses a bad --chunk itself)
        return
    try:
        if str(run.get("model", "")).startswith("ridge"):
            parts = ridge_peak(shape, run["config"].get("embed_dim", 64))
        else:
            parts = infer_peak(shape, run["config"], chunk)
    except (KeyError, TypeError, ValueError, AttributeError):
        return
    _check(parts, device, data, f"to predict ({shape.describe()}; chunk {chunk})", max_memory, progress)
