"""Benchmark what training costs (issue 8): seconds per epoch of the encoder and of FunDNN + GenSAN.

Providers, on the same bundle with the same initial weights:

* ``tnfast``           — TranscriptionNet as ``tnfast train`` builds it: the device's default
  profile (``full`` on CUDA, ``quick`` on CPU; a toy size at ``--scale tiny``), the fused
  kernels where they run (Triton on CUDA), bf16 autocast on CUDA, FunDNN's ridge prior fitted
  before timing (its one-off fit is not timed; its product is, in every step);
* ``tnfast_reference`` — the same model, weights and precision with every kernel forced to the
  pure-PyTorch reference path (no Triton). On CPU that is what ``tnfast`` runs, so it is not
  run twice;
* ``paper``            — the paper's configuration re-expressed in PyTorch: FunDNN 512-1024x3-978,
  batch 32, fp32, and GenSAN (tnfast's sizes) with the matmul-softmax-matmul attention of the
  original code, whose (L x L) scores are materialised; no ridge prior. The paper trains its
  encoder (BIONIC) separately, so it has GenSAN rows only.

Phases. ``encoder``: one full-graph step — the encoder over the whole multiplex, the
reconstruction loss, backward, AdamW step; every gene is encoded once, so one step is one epoch.
``gensan``: one step on a batch of training (gene, type) samples through FunDNN and GenSAN
(fixed embeddings, as the paper's precomputed ones), backward, AdamW step; an epoch is
ceil(training samples / batch) steps. Rows report the step's median time and the epoch time
derived from it; ``speedup_vs_reference`` and ``speedup_vs_paper`` compare epoch times.

Before timing, every provider's forward output (in eval mode) is compared with the same module
on the reference path in fp32; a provider that disagrees is reported and not timed.

    tnfast bench train --scale full --json benchmarks/results/
    python -m tnfast.benchmarks.bench_train --scale tiny       # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
from unittest import mock

import torch

from .harness import bench_config, csv, header, measure, rel_rms, run_worker, script_main, synthetic_bundle

MODULE = "tnfast.benchmarks.bench_train"
PROVIDERS = ("tnfast", "tnfast_reference", "paper")
PHASES = ("encoder", "gensan")
RUNS = {"tiny": (1, 1), "small": (1, 3), "full": (2, 5)}  # (warmup, repeats)
TINY_BATCH = 16
PAPER_BATCH = 32
PAPER_FUNDNN = (1024, 1024, 1024)
PAPER_EMBEDDING = 512
TOL = {"fp32": 1e-4, "bf16": 5e-2}


def run_config(scale: str, cuda: bool, provider: str):
    cfg = bench_config(scale, cuda)
    model = cfg.model
    if provider == "paper":
        model = model.replace(embedding_dim=PAPER_EMBEDDING, fundnn_hidden=PAPER_FUNDNN, ridge_prior=False)
    return cfg.profile, model, cfg.train


@contextlib.contextmanager
def kernels(provider: str):
    """Route the model's kernel calls as ``provider`` runs them (tnfast: backend auto)."""
    import tnfast.model.encoder as encoder
    import tnfast.model.gensan as gensan
    from tnfast.kernels import attention, attention_naive, gat_aggregate

    if provider == "tnfast":
        yield
        return
    att = attention_naive if provider == "paper" else functools.partial(attention, backend="reference")
    with mock.patch.object(encoder, "gat_aggregate", functools.partial(gat_aggregate, backend="reference")), \
            mock.patch.object(gensan, "attention", att):
        yield


def precision(provider: str, cuda: bool) -> str:
    return "bf16" if cuda and provider != "paper" else "fp32"


def _autocast(prec: str, cuda: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if prec == "bf16" and cuda else contextlib.nullcontext()


def worker(args) -> dict:
    """One provider, one phase, in this process: check it against the reference path, then time it."""
    from tnfast.data.bundle import TYPES
    from tnfast.model import Measurements, ModelDims, MultiplexGraph, TranscriptionNet, signature_loss, split_samples

    cuda = args.device == "cuda"
    dev = torch.device(args.device)
    bundle = synthetic_bundle(args.scale)
    profile, mcfg, tcfg = run_config(args.scale, cuda, args.provider)
    prec = precision(args.provider, cuda)
    graph = MultiplexGraph.for_model(bundle, mcfg, tcfg.seed).to(dev)
    torch.manual_seed(tcfg.seed)
    model = TranscriptionNet(mcfg, ModelDims.from_graph(graph, len(bundle.landmarks))).to(dev)
    model.scaler.fit_bundle(bundle)
    info = {"profile": profile, "precision": prec, "genes": bundle.n_genes, "edges": graph.n_edges}

    if args.phase == "encoder":
        params = model.encoder.parameters()
        forward = lambda: model.encode(graph)  # noqa: E731
        gen = torch.Generator().manual_seed(0)

        def loss_fn():
            return model.reconstruction_loss(model.encode(graph), graph, gen)
        info.update(steps_per_epoch=1)
    else:
        meas = Measurements.from_bundle(bundle, ("train",), model.scaler).to(dev)
        s_genes, s_types, s_values = split_samples(bundle, "train", TYPES)
        s_genes, s_types = torch.from_numpy(s_genes).to(dev), torch.from_numpy(s_types).to(dev)
        truth = model.scaler.transform(torch.from_numpy(s_values).to(dev), s_types)
        model.fit_prior(graph, s_genes, s_types, truth)  # tnfast's first guess includes it; the paper's has none
        ours = TINY_BATCH if args.scale == "tiny" else tcfg.batch_size
        batch = min(PAPER_BATCH if args.provider == "paper" else ours, len(s_genes))
        g = torch.Generator().manual_seed(0)
        emb = torch.randn(bundle.n_genes, mcfg.embedding_dim, generator=g).to(dev)
        order = torch.randperm(len(s_genes), generator=g).to(dev)
        params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        pos = [0]

        def sample():
            if pos[0] + batch > len(order):
                pos[0] = 0
            i = order[pos[0]:pos[0] + batch]
            pos[0] += batch
            return i

        def forward():
            i = order[:batch]
            values, avail = meas.gather(s_genes[i])
            return model(emb, s_genes[i], s_types[i], values, avail, graph=graph)

        def loss_fn():
            i = sample()
            values, avail = meas.gather(s_genes[i])
            return signature_loss(model(emb, s_genes[i], s_types[i], values, avail, graph=graph), truth[i],
                                  mcfg.beta)
        info.update(samples=len(s_genes), batch=batch, steps_per_epoch=math.ceil(len(s_genes) / batch))

    model.eval()
    with torch.no_grad():
        with kernels(args.provider), _autocast(prec, cuda):
            got = forward().float()
        with kernels("tnfast_reference"):
            want = forward().float()
    err = rel_rms(got, want)
    info["max_rel_rms"] = err
    if not err <= TOL[prec]:
        return {**info, "status": f"check failed: rel RMS {err:.2e} > {TOL[prec]:.0e}"}

    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with kernels(args.provider), _autocast(prec, cuda):
            loss = loss_fn()
        loss.backward()
        opt.step()

    timing = measure(step, *RUNS[args.scale], cuda)
    return {**info, **timing, "epoch_s": timing["median_ms"] * info["steps_per_epoch"] / 1e3}


def run_benchmark(scale: str = "tiny", device: str | None = None, providers: tuple[str, ...] = PROVIDERS,
                  phases: tuple[str, ...] = PHASES, log=print) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device == "cuda"
    results = []
    for phase in phases:
        rows = {}
        for prov in providers:
            row = {"phase": phase, "provider": prov, "median_ms": None, "epoch_s": None, "peak_mib": None,
                   "status": "ok"}
            if prov == "tnfast_reference" and not cuda:
                row["status"] = "skipped: on CPU tnfast runs the reference path itself"
            elif prov == "paper" and phase == "encoder":
                row["status"] = "skipped: the paper trains its encoder (BIONIC) separately"
            else:
                row.update(run_worker(MODULE, ["--worker", "--scale", scale, "--device", device,
                                               "--provider", prov, "--phase", phase], cuda))
            rows[prov] = row
        for row in rows.values():
            for peer, key in (("tnfast_reference", "speedup_vs_reference"), ("paper", "speedup_vs_paper")):
                theirs = rows.get(peer, {}).get("epoch_s")
                if row["provider"] != peer and theirs and row["epoch_s"]:
                    row[key] = theirs / row["epoch_s"]
            results.append(row)
            log(fmt(row))
    return {**header("train", scale, cuda, *RUNS[scale]), "results": results,
            "epoch": "encoder: one full-graph step; gensan: ceil(training samples / batch) steps"}


def fmt(row: dict) -> str:
    ms = "-" if row["median_ms"] is None else f"{row['median_ms']:.1f} ms/step  {row['epoch_s']:.2f} s/epoch"
    mem = "" if row["peak_mib"] is None else f"  peak {row['peak_mib']:.0f} MiB"
    sp = "".join(f"  x{row[k]:.2f} vs {k.removeprefix('speedup_vs_')}" for k in ("speedup_vs_reference", "speedup_vs_paper")
                 if row.get(k))
    st = "" if row["status"] == "ok" else f"  [{row['status']}]"
    return f"{row['phase']:8s} {row['provider']:16s} {ms}{mem}{sp}{st}"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(RUNS), default="tiny")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--provider", help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return script_main(args, worker, lambda: run_benchmark(args.scale, args.device, csv(args.providers),
                                                           csv(args.phases)))


if __name__ == "__main__":
    sys.exit(main())
