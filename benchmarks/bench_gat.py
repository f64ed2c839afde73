"""Benchmark ``tnfast.kernels.gat_aggregate`` against PyTorch Geometric's GAT message passing (issue 3).

Providers, on the same graph and the same random inputs:

* ``tnfast_triton``    — the fused Triton op (CUDA only);
* ``tnfast_reference`` — the pure-PyTorch path that CPU users run;
* ``pyg``              — GATConv's message passing as PyG runs it: gather ``a_src[j] + a_dst[i]``,
  LeakyReLU, ``torch_geometric.utils.softmax`` over each destination's edges, messages
  ``alpha * h[j]`` (an E x H x D tensor) and ``torch_geometric.utils.scatter`` sum.

Shapes: ``tiny`` (CPU smoke run) the synthetic tiny multiplex, H=2, D=8; ``small`` the synthetic
small multiplex, H=4, D=64; ``full`` one layer of ~1M undirected edges over 26,945 genes (the
synthetic default's 'disease' layer) at H=4, D=64, and the whole 7-layer genome-scale multiplex
(~7.5M undirected edges = ~15M directed) at the BIONIC setting H=10, D=64. Modes: forward and
forward+backward (gradients to h, a_src, a_dst).

Every provider is first checked against the reference (output and gradients, relative RMS) in
its own process; then timed in a fresh process, so its peak memory is its own. PyG is not run
where its E x H x D intermediates (~4.5 x E x H x D x 4 bytes, measured) would not fit in the
memory available. Achieved bandwidth (GPU only) counts the bytes an implementation must move at
least: per edge its index, the two attention terms and the source's H x D features; per row
its output (forward); forward+backward counts three times the forward's bytes.

    tnfast bench gat --scale full --json benchmarks/results/
    python -m tnfast.benchmarks.bench_gat --scale tiny                # CPU smoke run
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .harness import bandwidth_bound, csv, header, measure, rel_rms, run_worker, script_main

MODULE = "tnfast.benchmarks.bench_gat"  # its workers run as python -m MODULE --worker ...
PROVIDERS = ("tnfast_triton", "tnfast_reference", "pyg")
MODES = ("fwd", "fwd_bwd")
SHAPES = {  # scale -> [(shape name, synthetic scale, layers or None for all, H, D)]
    "tiny": [("multiplex", "tiny", None, 2, 8)],
    "small": [("multiplex", "small", None, 4, 64)],
    "full": [("one layer", "full", ("disease",), 4, 64), ("multiplex", "full", None, 10, 64)],
}
RUNS = {"tiny": (1, 3), "small": (1, 5), "full": (1, 3)}  # (warmup, repeats)
TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
PYG_BYTES_PER_EHD = 4.5 * 4  # measured: PyG GATConv fwd+bwd peak per E x H x D element (fp32)


@functools.lru_cache(maxsize=2)
def load_graph(synth_scale: str, layers: tuple[str, ...] | None):
    """(indptr, indices, number of rows) of the stacked multiplex of the synthetic bundle."""
    from tnfast.data.bundle import load_bundle
    from tnfast.data.synth import default_bundle, synthesize
    from tnfast.kernels import stack_multiplex

    b = synthesize("tiny") if synth_scale == "tiny" else load_bundle(default_bundle(synth_scale), truth=False)
    csrs = [c for name, c in b.networks.items() if layers is None or name in layers]
    indptr, indices, _ = stack_multiplex([(c.indptr, c.indices) for c in csrs])
    return torch.from_numpy(indptr), torch.from_numpy(indices), len(indptr) - 1


def inputs(m: int, heads: int, dim: int, device: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    h, a_src, a_dst = torch.randn(m, heads, dim, generator=g), torch.randn(m, heads, generator=g), torch.randn(m, heads, generator=g)
    d_out = torch.randn(m, heads, dim, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (h, a_src, a_dst, d_out)]


def provider(name: str, indptr: torch.Tensor, indices: torch.Tensor, m: int):
    from tnfast.kernels import gat_aggregate

    if name in ("tnfast_triton", "tnfast_reference"):
        backend = name.removeprefix("tnfast_")
        return lambda h, a_src, a_dst: gat_aggregate(h, a_src, a_dst, indptr, indices, backend=backend)
    from torch_geometric.utils import scatter, softmax

    dst = torch.repeat_interleave(torch.arange(m, device=indptr.device), indptr.diff())
    src = indices.long()

    def pyg(h, a_src, a_dst):
        alpha = softmax(F.leaky_relu(a_src[src] + a_dst[dst], 0.2), dst, num_nodes=m)
        return scatter(h[src] * alpha.unsqueeze(-1), dst, dim=0, dim_size=m, reduce="sum")

    return pyg


def step_fn(fn, tensors, mode: str):
    h, a_src, a_dst, d_out = tensors
    leaves = [t.detach().requires_grad_(mode == "fwd_bwd") for t in (h, a_src, a_dst)]

    def step():
        for t in leaves:
            t.grad = None
        with torch.set_grad_enabled(mode == "fwd_bwd"):
            out = fn(*leaves)
            if mode == "fwd_bwd":
                out.backward(d_out)
        return out, [t.grad for t in leaves]

    return step


def worker(args) -> dict:
    """One provider on one shape in this process: check against the reference, or time it."""
    cuda = args.device == "cuda"
    name, synth_scale, layers, heads, dim = SHAPES[args.scale][args.shape]
    dtype = getattr(torch, args.dtype)
    indptr, indices, m = load_graph(synth_scale, layers)
    indptr, indices = indptr.to(args.device), indices.to(args.device)
    tensors = inputs(m, heads, dim, args.device, dtype)
    step = step_fn(provider(args.provider, indptr, indices, m), tensors, args.mode)
    if args.task == "check":
        out, grads = step()
        ref_out, ref_grads = step_fn(provider("tnfast_reference", indptr, indices, m),
                                     [t.double() for t in tensors], args.mode)()
        errs = [rel_rms(out, ref_out)] + [rel_rms(g, r) for g, r in zip(grads, ref_grads) if g is not None]
        return {"max_rel_rms": max(errs)}
    return measure(step, *RUNS[args.scale], cuda)


def available_bytes(cuda: bool) -> float:
    if cuda:
        return float(torch.cuda.mem_get_info()[0])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return float(line.split()[1]) * 1024
    return float("inf")


def run_benchmark(scale: str = "tiny", device: str | None = None, dtypes: tuple[str, ...] | None = None,
                  providers: tuple[str, ...] = PROVIDERS, modes: tuple[str, ...] = MODES, log=print) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device == "cuda"
    dtypes = dtypes or (("float32", "bfloat16") if cuda else ("float32",))
    results = []
    for shape_i, (name, synth_scale, layers, heads, dim) in enumerate(SHAPES[scale]):
        indptr, indices, m = load_graph(synth_scale, layers)
        edges = int(indptr[-1])
        for dtype in dtypes:
            es = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
            fwd_bytes = edges * (4 + 2 * heads * 4 + heads * dim * es) + m * heads * dim * es
            for mode in modes:
                rows = {}
                for prov in providers:
                    row = {"shape": name, "rows": m, "edges": edges, "H": heads, "D": dim, "dtype": dtype,
                           "mode": mode, "provider": prov, "median_ms": None, "peak_mib": None, "status": "ok"}
                    need = PYG_BYTES_PER_EHD * edges * heads * dim
                    if prov == "tnfast_triton" and not cuda:
                        row["status"] = "skipped: needs CUDA"
                    elif prov == "pyg" and need > 0.8 * available_bytes(cuda):
                        row["status"] = f"skipped: needs ~{need / 2**30:.0f} GiB, {available_bytes(cuda) / 2**30:.0f} GiB available"
                    else:
                        common = ["--worker", "--scale", scale, "--shape", str(shape_i), "--provider", prov,
                                  "--mode", mode, "--dtype", dtype, "--device", device]
                        checked = run_worker(MODULE, [*common, "--task", "check"], cuda)
                        if "max_rel_rms" not in checked:
                            row["status"] = checked["status"]
                        elif not checked["max_rel_rms"] <= TOL[getattr(torch, dtype)]:
                            row["status"] = f"check failed: rel RMS {checked['max_rel_rms']:.2e}"
                        else:
                            row["max_rel_rms"] = checked["max_rel_rms"]
                            row.update(run_worker(MODULE, [*common, "--task", "time"], cuda))
                    bound = bandwidth_bound(cuda)
                    if row["median_ms"] and cuda:
                        moved = fwd_bytes * (3 if mode == "fwd_bwd" else 1)
                        row["achieved_gbps"] = moved / (row["median_ms"] / 1e3) / 1e9
                        row["fraction_of_bound"] = moved / (row["median_ms"] / 1e3) / bound if bound else None
                    rows[prov] = row
                pyg = rows.get("pyg", {})
                for row in rows.values():
                    if row["provider"] != "pyg" and row["median_ms"] and pyg.get("median_ms"):
                        row["speedup_vs_pyg"] = pyg["median_ms"] / row["median_ms"]
                        row["memory_ratio_vs_pyg"] = (pyg["peak_mib"] / row["peak_mib"]
                                                      if row["peak_mib"] and row["peak_mib"] > 0 else None)
                    results.append(row)
                    log(fmt(row))
    return {**header("gat", scale, cuda, *RUNS[scale]), "results": results}


def memory_vs_pyg(ratio: float) -> str:
    """PyG's peak over tnfast's in words: "2.0x less memory", or "2.0x more memory" for a ratio
    of 0.5 (not "0.5x less")."""
    return f"{ratio:.1f}x less memory" if ratio >= 1 else f"{1 / ratio:.1f}x more memory"


def fmt(row: dict) -> str:
    ms = "-" if row["median_ms"] is None else f"{row['median_ms']:.1f} ms"
    mem = "" if row["peak_mib"] is None else f"  peak {row['peak_mib']:.0f} MiB"
    sp = f"  x{row['speedup_vs_pyg']:.2f} vs pyg" if row.get("speedup_vs_pyg") else ""
    mr = f"  {memory_vs_pyg(row['memory_ratio_vs_pyg'])}" if row.get("memory_ratio_vs_pyg") else ""
    st = "" if row["status"] == "ok" else f"  [{row['status']}]"
    return (f"{row['shape']:10s} E={row['edges']:<9d} H={row['H']:<2d} D={row['D']:<3d} {row['dtype']:8s} "
            f"{row['mode']:7s} {row['provider']:16s} {ms}{mem}{sp}{mr}{st}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--dtype", default=None, help="comma-separated float32,bfloat16")
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", choices=("check", "time"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--provider", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return script_main(args, worker, lambda: run_benchmark(args.scale, args.device, csv(args.dtype) if args.dtype else None,
                                                           csv(args.providers), csv(args.modes)))


if __name__ == "__main__":
    sys.exit(main())
