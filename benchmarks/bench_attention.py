"""Benchmark ``tnfast.kernels.attention`` on GenSAN's axial-attention shapes (issue 4).

Providers, side by side on every shape:

* ``tnfast_triton`` — the fused Triton op (CUDA only);
* ``torch_sdpa``    — ``torch.nn.functional.scaled_dot_product_attention`` (whatever backend it picks);
* ``matmul``        — the plain matmul-softmax-matmul of the original TranscriptionNet.

Shapes (B = 256 genes at ``--scale full``): column attention L = 978, D in {3, 8, 16}, H in {1, 4};
row attention L = 3, H = 8, D = 64. Modes: forward, and forward + backward. Every provider's
output (and gradients) is first checked against a float64 reference on the first few batch
elements; a provider that fails the check is reported and not timed. Times are medians over
``repeats`` runs after ``warmup`` runs (CUDA events on a GPU, ``time.perf_counter`` on CPU); peak
memory is ``torch.cuda.max_memory_allocated`` above the inputs (not measured on CPU).

    tnfast bench attention --scale full --json benchmarks/results/
    python -m tnfast.benchmarks.bench_attention --scale tiny   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tnfast.kernels import attention, attention_naive

from .harness import header, measure, rel_rms

SCALES = {
    # name: (B, warmup, repeats)
    "full": (256, 5, 30),
    "small": (32, 2, 10),
    "tiny": (2, 1, 3),
}
COLUMN = [(h, 978, d) for d in (3, 8, 16) for h in (1, 4)]  # (H, L, D)
ROW = [(8, 3, 64)]
PROVIDERS = ("tnfast_triton", "torch_sdpa", "matmul")
MODES = ("fwd", "fwd_bwd")
CHECK_B = 4  # batch elements compared against the float64 reference
TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def _provider_fn(name: str):
    if name == "tnfast_triton":
        return lambda q, k, v: attention(q, k, v, backend="triton")
    if name == "torch_sdpa":
        return lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v)
    if name == "matmul":
        return attention_naive
    raise ValueError(f"unknown provider {name!r}")


def _step(fn, q, k, v, do, mode):
    out = fn(q, k, v)
    if mode == "fwd_bwd":
        out.backward(do)
    return out


def _check(fn, q, k, v, do, mode) -> float:
    """Max relative RMS error of the output (and gradients) on the first CHECK_B batch elements."""
    q, k, v = (t.detach().requires_grad_(mode == "fwd_bwd") for t in (q, k, v))
    out = _step(fn, q, k, v, do, mode)
    ref = [t[:CHECK_B].detach().double().requires_grad_(mode == "fwd_bwd") for t in (q, k, v)]
    want = attention_naive(*ref)
    errs = [rel_rms(out[:CHECK_B], want)]
    if mode == "fwd_bwd":
        want.backward(do[:CHECK_B].double())
        errs += [rel_rms(t.grad[:CHECK_B], r.grad) for t, r in zip((q, k, v), ref)]
    return max(errs)


def _time(fn, q, k, v, do, mode, warmup: int, repeats: int, cuda: bool) -> tuple[float, float | None]:
    """(median milliseconds, peak MiB above the live tensors, or None on CPU where it is not measured)."""
    leaves = [t.detach().requires_grad_(mode == "fwd_bwd") for t in (q, k, v)]

    def once():
        for t in leaves:
            t.grad = None
        with torch.set_grad_enabled(mode == "fwd_bwd"):
            return _step(fn, *leaves, do, mode)

    m = measure(once, warmup, repeats, cuda)
    return m["median_ms"], m["peak_mib"] if cuda else None

def run_benchmark(
    scale: str = "full",
    device: str | None = None,
    dtypes: tuple[str, ...] | None = None,
    providers: tuple[str, ...] = PROVIDERS,
    modes: tuple[str, ...] = MODES,
    warmup: int | None = None,
    repeats: int | None = None,
    log=print,
) -> dict:
    """Run the benchmark and return the JSON-ready report (see the module docstring)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    batch, warm_default, rep_default = SCALES[scale]
    warmup = warm_default if warmup is None else warmup
    repeats = rep_default if repeats is None else repeats
    if dtypes is None:
        dtypes = ("float32", "bfloat16") if cuda else ("float32",)
    results = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for kind, shapes in (("column", COLUMN), ("row", ROW)):
            for nh, seq, d in shapes:
                shape = (batch, nh, seq, d)
                g = torch.Generator().manual_seed(0)
                q, k, v, do = (torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(4))
                for mode in modes:
                    rows = {}
                    for prov in providers:
                        row = {"attention": kind, "B": batch, "H": nh, "L": seq, "D": d, "dtype": dtype_name,
                               "mode": mode, "provider": prov, "median_ms": None, "peak_mib": None,
                               "max_rel_rms": None, "status": "ok"}
                        if prov == "tnfast_triton" and not cuda:
                            row["status"] = "skipped: needs CUDA"
                        else:
                            fn = _provider_fn(prov)
                            try:
                                err = _check(fn, q, k, v, do, mode)
                                row["max_rel_rms"] = err
                                if not err <= TOL[dtype]:
                                    row["status"] = f"check failed: rel RMS {err:.2e} > {TOL[dtype]:.0e}"
                                else:
                                    row["median_ms"], row["peak_mib"] = _time(fn, q, k, v, do, mode, warmup, repeats, cuda)
                            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # e.g. OOM of the naive path
                                row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                                if cuda:
                                    torch.cuda.empty_cache()
                        rows[prov] = row
                    for row in rows.values():
                        t = row["median_ms"]
                        for ref, key in (("torch_sdpa", "speedup_vs_sdpa"), ("matmul", "speedup_vs_matmul")):
                            r = rows.get(ref, {}).get("median_ms")
                            row[key] = (r / t) if (t and r) else None
                        results.append(row)
                        log(_fmt(row))
    return {**header("attention", scale, cuda, warmup, repeats), "results": results,
            "peak_memory": "torch.cuda.max_memory_allocated above the inputs" if cuda else "not measured on CPU"}


def _fmt(row: dict) -> str:
    ms = "      -" if row["median_ms"] is None else f"{row['median_ms']:9.3f}"
    mem = "" if row["peak_mib"] is None else f" {row['peak_mib']:9.1f} MiB"
    sp = "" if row["speedup_vs_sdpa"] is None else f"  x{row['speedup_vs_sdpa']:.2f} vs sdpa"
    sm = "" if row["speedup_vs_matmul"] is None else f"  x{row['speedup_vs_matmul']:.2f} vs matmul"
    err = "" if row["max_rel_rms"] is None else f"  err {row['max_rel_rms']:.1e}"
    status = "" if row["status"] == "ok" else f"  [{row['status']}]"
    return (f"{row['attention']:6s} B={row['B']:<3d} H={row['H']} L={row['L']:<4d} D={row['D']:<3d} "
            f"{row['dtype']:8s} {row['mode']:7s} {row['provider']:13s} {ms} ms{mem}{sp}{sm}{err}{status}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full", help="full: B=256; tiny: B=2 (CPU smoke run)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--dtype", default=None, help="comma-separated, e.g. float32,bfloat16 (default: both on CUDA, float32 on CPU)")
    ap.add_argument("--providers", default=",".join(PROVIDERS), help="comma-separated subset of " + ",".join(PROVIDERS))
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    args = ap.parse_args(argv)
    providers = tuple(p for p in args.providers.split(",") if p)
    bad = [p for p in providers if p not in PROVIDERS]
    if bad:
        ap.error(f"unknown provider(s) {bad}; choose from {list(PROVIDERS)}")
    modes = tuple(m for m in args.modes.split(",") if m)
    if any(m not in MODES for m in modes):
        ap.error(f"modes must be among {list(MODES)}")
    dtypes = None if args.dtype is None else tuple(x for x in args.dtype.split(",") if x)
    for name in dtypes or ():
        if not isinstance(getattr(torch, name, None), torch.dtype) or name not in ("float32", "bfloat16", "float16"):
            ap.error(f"--dtype must be float32, bfloat16 or float16, got {name!r}")
    report = run_benchmark(args.scale, args.device, dtypes, providers, modes, args.warmup, args.repeats)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = [r for r in report["results"] if r["status"].startswith("check failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
