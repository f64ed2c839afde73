"""Benchmark network integration at the BIONIC setting (issues 5 and 8): what full-graph training
of the encoder reaches within a time budget.

BIONIC, the integration tool TranscriptionNet used, trains its GAT encoder on sampled
mini-batches for many epochs. tnfast trains the same kind of encoder over the whole multiplex
at once (every step encodes every gene through the fused kernels). The question users ask is
whether that finishes: here the ``full`` model profile's encoder (BIONIC's 10 heads x 64,
2 GAT layers, a 512-d fused embedding) is trained on network reconstruction alone, as
``tnfast train`` pretrains it, until a budget of steps or seconds is spent (full scale: an hour
on CPU, minutes on a GPU). The run is its own measurement: there is no peer that runs at this
scale to compare with side by side (PyG's GATConv would need ~161 GiB, see ``bench gat``).

Reported: seconds and the (sampled, as trained) reconstruction loss of every step, whether the
loss stayed finite and how it fell, peak memory, and what the fused embedding holds at step 0
(the freshly initialised encoder over the same inputs) and at the end:

* ``edge_auroc``: per layer, how well the embedding's dot products tell a fixed sample of the
  layer's edges from random pairs of its genes (the reconstruction's own criterion; the edges
  are training edges, so this measures integration, not link prediction);
* ``ridge_pearson_delta``: per type, test PearsonΔ of a ridge from the fused embedding to the
  measured signatures (penalty by valid MSE), beside the same ridge on tnfast's fixed design
  matrix (the ``ridge`` baseline of ``tnfast evaluate``): does the integrated embedding carry
  what the signatures need.

    tnfast bench integrate --scale full --json benchmarks/results/
    python -m tnfast.benchmarks.bench_integrate --scale small --max-steps 40
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from .harness import bench_config, header, peak_rss_mib, reset_peak_rss, synthetic_bundle

# (max steps, seconds of training) per scale and device; whichever ends first
BUDGETS = {("tiny", "cpu"): (3, None), ("tiny", "cuda"): (3, None),
           ("small", "cpu"): (40, 900.0), ("small", "cuda"): (200, 60.0),
           ("full", "cpu"): (1000, 3300.0), ("full", "cuda"): (1000, 180.0)}
AUROC_EDGES = 4096  # sampled edges per layer (and as many random pairs) for edge_auroc
AUROC_SEED = 12345  # one fixed sample for every checkpoint of every run


@torch.no_grad()
def embedding(model, graph, dev, precision: str) -> np.ndarray:
    """(N, E) float64 fused embedding of every gene, eval mode (no dropout)."""
    from tnfast.train import autocast

    model.eval()
    with autocast(dev, precision):
        emb = model.encode(graph)
    model.train()
    return emb.double().cpu().numpy()


def edge_auroc(emb: np.ndarray, graph) -> dict[str, float]:
    """Per layer: AUROC of <emb_u, emb_v> for a fixed sample of edges against random gene pairs."""
    from tnfast.metrics import auroc
    from tnfast.model.reconstruction import sample_pairs

    u, v, label, layer = (t.cpu().numpy() for t in sample_pairs(
        graph, AUROC_EDGES, 1, torch.Generator().manual_seed(AUROC_SEED)))
    score = (emb[u] * emb[v]).sum(axis=1)
    return {name: auroc(score[layer == i], label[layer == i] > 0.5)
            for i, name in enumerate(graph.layer_names) if (layer == i).any()}


def ridge_pearson_delta(x: np.ndarray, bundle) -> dict[str, float]:
    """Per type: mean test PearsonΔ of a ridge from gene inputs ``x`` (penalty by valid MSE)."""
    from tnfast.baselines import ridge_baseline, training_mean
    from tnfast.metrics import pearson_delta

    out = {}
    for t, s in bundle.signatures.items():
        tr, va, te = (s.rows(split) for split in ("train", "valid", "test"))
        if len(tr) < 2 or not len(te):
            continue
        xv, yv = (x[s.gene[va]], s.values[va]) if len(va) else (None, None)
        pred, _ = ridge_baseline(x[s.gene[tr]], s.values[tr], xv, yv, x[s.gene[te]])
        out[t] = float(pearson_delta(pred, s.values[te], training_mean(s.values[tr])).mean())
    return out


def snapshot(step: int, model, graph, bundle, dev, precision: str) -> dict:
    emb = embedding(model, graph, dev, precision)
    return {"step": step, "edge_auroc": edge_auroc(emb, graph), "ridge_pearson_delta": ridge_pearson_delta(emb, bundle)}


def integrate(scale: str, device: str, max_steps: int, budget_s: float | None, sets: list[str] = (),
              log=print) -> dict:
    """Train the encoder on reconstruction alone until ``max_steps`` or ``budget_s`` (None: no
    limit) seconds of training; the row."""
    from tnfast.design import DesignConfig, design_matrix
    from tnfast.train import build_model, reconstruction_step

    dev = torch.device(device)
    cfg = bench_config(scale, dev.type == "cuda", sets, profile="full")  # the BIONIC-width encoder
    tc, m = cfg.train, cfg.model
    bundle = synthetic_bundle(scale)
    model, graph = build_model(bundle, cfg, dev)
    row = {"provider": "tnfast", "profile": cfg.profile, "genes": graph.n_genes, "layers": graph.n_layers,
           "directed_edges": int(graph.n_edges), "heads": m.gat_heads, "head_dim": m.gat_head_dim,
           "gat_layers": m.gat_layers, "embedding_dim": m.embedding_dim, "lr": tc.lr,
           "max_steps": max_steps, "budget_s": budget_s, "status": "ok"}
    log(f"integrate: {graph.n_genes:,} genes, {graph.n_layers} layers, {graph.n_edges:,} directed edges, "
        f"{m.gat_heads} x {m.gat_head_dim}, {m.gat_layers} GAT layers, {m.embedding_dim}-d, on {device}")
    row["baseline_ridge_pearson_delta"] = ridge_pearson_delta(design_matrix(bundle, DesignConfig()), bundle)
    row["start"] = snapshot(0, model, graph, bundle, dev, tc.precision)
    log(f"step 0: {fmt_snapshot(row['start'])}")

    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(tc.seed + 2)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
    steps, t0 = [], time.perf_counter()
    while len(steps) < max_steps and (budget_s is None or time.perf_counter() - t0 < budget_s):
        value = reconstruction_step(model, graph, opt, gen, tc, dev).item()  # also waits for the device: the step's time is whole
        steps.append({"loss": value, "elapsed_s": round(time.perf_counter() - t0, 3)})
        log(f"step {len(steps)}: loss {value:.4f}  {steps[-1]['elapsed_s']:.1f} s")
        if not math.isfinite(value):
            row["status"] = f"error: the loss became {value} at step {len(steps)}"
            break
    row["train_s"] = steps[-1]["elapsed_s"] if steps else 0.0
    row["peak_mib"] = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
                       else peak_rss_mib())
    row["steps"] = steps
    row["median_ms"] = float(np.median(np.diff([0.0] + [s["elapsed_s"] for s in steps]))) * 1e3 if steps else None
    losses = [s["loss"] for s in steps]
    row["finite"] = all(math.isfinite(x) for x in losses)
    q = max(len(losses) // 4, 1)
    row["loss_first_quarter"], row["loss_last_quarter"] = (float(np.mean(losses[:q])), float(np.mean(losses[-q:]))) \
        if losses else (None, None)
    row["end"] = snapshot(len(steps), model, graph, bundle, dev, tc.precision)
    log(f"step {len(steps)}: {fmt_snapshot(row['end'])}")
    return row


def fmt_snapshot(s: dict) -> str:
    au = s["edge_auroc"]
    rp = ", ".join(f"{t} {v:.3f}" for t, v in s["ridge_pearson_delta"].items())
    return f"edge AUROC mean {np.mean(list(au.values())):.3f} over {len(au)} layers; ridge on the embedding: {rp}"


def run_benchmark(scale: str = "tiny", device: str | None = None, log=print, max_steps: int | None = None,
                  budget_s: float | None = None, sets: list[str] = ()) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps0, secs0 = BUDGETS[(scale, device)]
    row = integrate(scale, device, max_steps or steps0, budget_s or secs0, sets, log)
    log(fmt(row))
    return {**header("integrate", scale, device == "cuda", 0, len(row["steps"])), "results": [row],
            "timing": "wall time of each training step (forward, loss, backward, clip, AdamW)",
            "peak_memory": "peak RSS of the process (CPU) or torch.cuda.max_memory_allocated over the steps"}


def fmt(row: dict) -> str:
    if not row["steps"]:
        return f"integrate  no step ran  [{row['status']}]"
    st = "" if row["status"] == "ok" else f"  [{row['status']}]"
    return (f"integrate  {len(row['steps'])} steps in {row['train_s']:.0f} s ({row['median_ms'] / 1e3:.2f} s/step), "
            f"loss {row['loss_first_quarter']:.3f} -> {row['loss_last_quarter']:.3f} (first / last quarter), "
            f"peak {row['peak_mib']:.0f} MiB{st}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="tiny", choices=("tiny", "small", "full"))
    p.add_argument("--device", default=None, choices=("cpu", "cuda"))
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--budget-s", type=float, default=None, help="seconds of training (default: by scale and device)")
    p.add_argument("--set", action="append", default=[], help="a config override, as tnfast train --set")
    p.add_argument("--json", default=None)
    return p


def main(argv=None) -> int:
    import json
    from pathlib import Path

    args = parser().parse_args(argv)
    report = run_benchmark(args.scale, args.device, max_steps=args.max_steps, budget_s=args.budget_s, sets=args.set)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["results"][0]["status"].startswith("error") else 0


if __name__ == "__main__":
    raise SystemExit(main())
