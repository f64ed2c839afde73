"""Time tile configurations of ``tnfast.kernels.attention`` on GenSAN's shapes; report the fastest.

The kernel's tiles come from a fixed table (``_config`` in ``kernels/attention.py``: no
autotuning, whose pick could change between processes and break bit-identical runs). This sweep
measures the candidates the table can be set from. For every GenSAN shape (B = 256; column
attention L = 978, D in {3, 8, 16}, H in {1, 4}; row attention L = 3, H = 8, D = 64) and dtype
(fp32, bf16) it runs, per configuration (BLOCK_M, BLOCK_N, num_warps, num_stages):

1. a correctness check: output and gradients on the first CHECK_B batch elements against torch
   SDPA in float64 on the same rounded inputs (relative RMS below 1e-4 for fp32, 3e-2 for bf16),
   and a second identical run that must be bit-identical; a configuration failing either is
   rejected, not timed;
2. forward and forward + backward times: median of ``triton.testing.do_bench`` (L2 flushed
   between calls); torch SDPA is timed on the same inputs.

Candidates. Column attention: BLOCK_M, BLOCK_N in {32, 64, 128}, num_warps in {2, 4, 8},
num_stages in {1, 2, 3}, keeping tiles with 16 to 64 score elements per thread (fewer leave
lanes idle, more spill registers), ranked (the table's own entry first, then by a register-use
prior, see :func:`column_candidates`) and cut to ``--max-configs``. Row attention
(L = 3, one tile): 16 x 16 and 32 x 32 tiles with 1 to 4 warps. For fp32 one more candidate, the
table's tiles with the other ``--fp32-precision`` ("ieee" against "tf32x3"), says what the
precision choice is worth.

Time. Triton compiles four kernels per configuration and shape, which dominates a sweep: worker
processes (``--jobs``) compile every candidate first, on a batch of one (the compiled kernels
depend on the strides and the tiles, not on B), into Triton's on-disk cache, from which the
measuring process then loads them; nothing else runs on the GPU while it measures. A wall-clock
budget (``--budget-s``) bounds the whole run: compiling stops at 60% of it (candidates not
compiled by then are skipped), and each (shape, dtype) gets an equal share of what is left for
measuring; the table's configuration and SDPA are always measured. What was skipped is recorded.

    python benchmarks/sweep_attention.py --json benchmarks/results/sweep_attention_h200.json
    python benchmarks/sweep_attention.py --quick --json /tmp/sweep.json          # ~8 configs a shape
    TRITON_INTERPRET=1 python benchmarks/sweep_attention.py --smoke --json /tmp/sweep_cpu.json

``--smoke`` (tiny shapes, B = 1, two configurations and the precision reference, fp32) checks the
script end to end on CPU under the Triton interpreter; its times mean nothing. The JSON holds,
per (shape, dtype, mode) with mode fwd, fwd_bwd and bwd (their difference: the backward's own
time, for a table that would give the backward kernels tiles of their own), the best
configuration and its time, the table's configuration and its time, and SDPA's time; and every
configuration with its status, times and compile/measure seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

attn = importlib.import_module("tnfast.kernels.attention")  # the module; the package exports the function

COLUMN = [("column", h, 978, d) for d in (3, 8, 16) for h in (1, 4)]  # (kind, H, L, D)
ROW = [("row", 8, 3, 64)]
SMOKE_SHAPES = [("column", 1, 100, 8), ("row", 2, 3, 64)]
BATCH = 256
MODES = ("fwd", "fwd_bwd")  # timed; "bwd" is reported as their difference
REPORTED = (*MODES, "bwd")
TOL = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}
CHECK_B = 4  # batch elements compared against the float64 reference
# Share of the budget for compiling: ~0.2 s of checking and timing per configuration is less
# than a worker's ~3-10 s of compiling one divided by the ~15 workers.
COMPILE_SHARE = 0.6
PRESETS = {
    # name: (max configs per shape, do_bench warmup ms, do_bench rep ms)
    "full": (20, 5, 20),
    "quick": (8, 3, 12),
    "smoke": (2, 0, 0),
}


class Config(NamedTuple):
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    fp32_precision: str | None = None  # None: the sweep's --fp32-precision


def op_kwargs(cfg: Config, dtype: str, fp32_precision: str) -> dict:
    """attention_triton's keyword arguments for ``cfg`` (the precision matters for fp32 only)."""
    kw = cfg._asdict()
    precision = kw.pop("fp32_precision") or fp32_precision
    return {**kw, "fp32_precision": precision} if dtype == "float32" else kw


def unit_id(group: int, rank: int) -> int:
    return group * 1000 + rank


def table_config(seq: int, d: int) -> Config:
    c = attn._config(seq, d)
    return Config(c["BLOCK_M"], c["BLOCK_N"], c["num_warps"], c["num_stages"])


def column_candidates(default: Config, dtype: str) -> list[Config]:
    """The column grid, most promising first (the ranking decides what a small budget keeps).

    The ranking is a prior from compiling every candidate for sm_90 with Triton 3.6 (D = 8) and
    reading the register use. In bf16 nothing spills (8 bytes at 64 x 32 with 2 warps): by stages
    (3, Triton's default, then 2, then 1), then 32 score elements per thread, then 16, then 64.
    In fp32 the tf32x3 dots triple the operand registers: the dK/dV kernel spills 8 to 170 bytes
    in most tiles, none at 128 x 32 with 8 warps or 64 x 32 with 4 (16 per thread), and 0.6 to
    1.6 KB with 64 per thread or with BLOCK_M < BLOCK_N = 128 (it owns BLOCK_M keys and streams
    BLOCK_N queries). So fp32 puts 64 per thread and BLOCK_M < BLOCK_N last, then ranks by
    stages, then 16 before 32 per thread. Bigger tiles first within a rank.
    """
    def rank(c: Config):
        per_thread = c.block_m * c.block_n // (32 * c.num_warps)
        if dtype == "float32":
            tier = (per_thread == 64 or c.block_m < c.block_n, -c.num_stages, per_thread)
        else:
            tier = (False, -c.num_stages, {32: 0, 16: 1, 64: 2}[per_thread])
        return (c != default, *tier, -c.block_m * c.block_n, -c.block_m, c.num_warps)

    grid = [Config(bm, bn, w, s) for bm in (32, 64, 128) for bn in (32, 64, 128) for w in (2, 4, 8)
            for s in (1, 2, 3) if 16 <= bm * bn // (32 * w) <= 64]
    return sorted(set(grid) | {default}, key=rank)


def row_candidates(default: Config) -> list[Config]:
    # L = 3 fits one tile: larger tiles only add padding, and the loops run once (stages moot).
    grid = [Config(16, 16, w, 3) for w in (1, 2, 4)] + [Config(32, 32, w, 3) for w in (2, 4)]
    return [default] + [c for c in grid if c != default]


# --------------------------------------------------------------------------------------------
# Compile workers: ``--worker FILE`` runs each unit of FILE once on a batch of one and prints a
# JSON line per unit; Triton keeps the compiled kernels in its on-disk cache.
# --------------------------------------------------------------------------------------------
def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def compile_unit(unit: dict, device: str) -> str:
    dtype = getattr(torch, unit["dtype"])
    shape = (1, unit["H"], unit["L"], unit["D"])
    q, k, v, do = (torch.randn(shape, device=device).to(dtype) for _ in range(4))
    leaves = [t.requires_grad_() for t in (q, k, v)]
    try:
        attn.attention_triton(*leaves, **unit["config"]).backward(do)
        if device == "cuda":
            torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - e.g. out of shared memory: the unit's status
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return "ok"


def worker(path: Path) -> int:
    device = _device()
    for line in path.read_text().splitlines():
        unit = json.loads(line)
        t0 = time.perf_counter()
        status = compile_unit(unit, device)
        print(json.dumps({"id": unit["id"], "status": status, "s": round(time.perf_counter() - t0, 3)}), flush=True)
        if status != "ok" and device == "cuda" and not _cuda_alive():
            return 1  # a broken context would fail every later unit: leave them unreported
    return 0


def _cuda_alive() -> bool:
    try:
        torch.cuda.synchronize()
        return True
    except Exception:  # noqa: BLE001 - any error here means the context is unusable
        return False


def precompile(units: list[dict], jobs: int, deadline: float, log) -> dict[int, dict]:
    """Compile ``units`` in ``jobs`` worker processes until done or ``deadline``.

    Returns {unit id: {"status": "ok" or the error, "s": the worker's seconds}} for the units
    reported in time; the workers are gone on return, so nothing else shares the GPU afterwards.
    """
    results: dict[int, dict] = {}
    if jobs <= 0 or not units:
        return results
    # Round-robin shards: units come ranked, so every worker starts with the best candidates.
    shards = [units[i::jobs] for i in range(min(jobs, len(units)))]
    lines: queue.Queue = queue.Queue()
    procs = []
    with tempfile.TemporaryDirectory(prefix="sweep_attention_") as tmp:
        try:
            for i, shard in enumerate(shards):
                path = Path(tmp) / f"units{i}.jsonl"
                path.write_text("".join(json.dumps(u) + "\n" for u in shard))
                with open(Path(tmp) / f"stderr{i}.txt", "w") as err:
                    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(path)],
                                            stdout=subprocess.PIPE, stderr=err, text=True)
                threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
                procs.append(proc)
            while len(results) < len(units) and time.perf_counter() < deadline:
                try:
                    item = lines.get(timeout=min(1.0, max(deadline - time.perf_counter(), 0.01)))
                except queue.Empty:
                    if all(p.poll() is not None for p in procs) and lines.empty():
                        break
                    continue
                results[item["id"]] = {"status": item["status"], "s": item["s"]}
        finally:
            for i, proc in enumerate(procs):
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if proc.returncode not in (0, -9):  # -9: killed here at the deadline
                    tail = (Path(tmp) / f"stderr{i}.txt").read_text().strip().splitlines()
                    log(f"  compile worker {i} exited {proc.returncode}: {tail[-1][:200] if tail else ''}")
    return results


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        if line.startswith('{"id"'):
            lines.put(json.loads(line))


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make_timer(cuda: bool, warmup_ms: int, rep_ms: int):
    if cuda:
        import triton.testing

        def timer(fn, leaves):
            return triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=leaves,
                                           return_mode="median")
    else:
        def timer(fn, leaves):  # the interpreter's times mean nothing: one run exercises the path
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
    return timer


class Group:
    """One (shape, dtype): its inputs and the float64 reference on the first CHECK_B elements."""

    def __init__(self, kind: str, nh: int, seq: int, d: int, dtype: str, batch: int, device: str):
        self.kind, self.H, self.L, self.D, self.dtype, self.B = kind, nh, seq, d, dtype, batch
        g = torch.Generator().manual_seed(0)
        shape = (batch, nh, seq, d)
        self.q, self.k, self.v, self.do = (
            torch.randn(shape, generator=g).to(device=device, dtype=getattr(torch, dtype)) for _ in range(4))
        self.leaves = [t.detach().clone().requires_grad_() for t in (self.q, self.k, self.v)]
        ref = [t[:CHECK_B].double().requires_grad_() for t in (self.q, self.k, self.v)]
        out = F.scaled_dot_product_attention(*ref)
        out.backward(self.do[:CHECK_B].double())
        self.ref = [out.detach()] + [t.grad for t in ref]

    def label(self) -> str:
        return f"{self.kind:6s} H={self.H} L={self.L:<4d} D={self.D:<3d} {self.dtype:8s}"

    def key(self) -> dict:
        return {"attention": self.kind, "B": self.B, "H": self.H, "L": self.L, "D": self.D, "dtype": self.dtype}

    def fns(self, op):
        """(forward, forward + backward) closures of ``op(q, k, v)`` on this group's inputs."""
        def fwd():
            return op(self.q, self.k, self.v)

        def fwd_bwd():
            op(*self.leaves).backward(self.do)
        return {"fwd": fwd, "fwd_bwd": fwd_bwd}

    def check(self, op) -> tuple[float, bool]:
        """(max rel RMS against the reference, whether a second run is bit-identical)."""
        runs = []
        for _ in range(2):
            for t in self.leaves:
                t.grad = None
            out = op(*self.leaves)
            out.backward(self.do)
            runs.append([out.detach()] + [t.grad.clone() for t in self.leaves])
        err = max(rel_rms(a[:CHECK_B], b) for a, b in zip(runs[0], self.ref))
        same = all(torch.equal(a, b) for a, b in zip(*runs))
        return err, same


def blank_row(kw: dict, status: str) -> dict:
    return {"config": kw, "max_rel_rms": None, "deterministic": None, "fwd_ms": None, "fwd_bwd_ms": None,
            "bwd_ms": None, "status": status}


def measure_config(group: Group, kw: dict, timer) -> dict:
    row = blank_row(kw, "ok")

    def op(q, k, v):
        return attn.attention_triton(q, k, v, **kw)

    try:
        err, same = group.check(op)
        row["max_rel_rms"], row["deterministic"] = err, same
        tol = TOL[group.dtype]
        if not err <= tol:
            row["status"] = f"rejected: rel RMS {err:.2e} > {tol:.0e}"
        elif not same:
            row["status"] = "rejected: two runs differ"
        else:
            for mode, fn in group.fns(op).items():
                row[f"{mode}_ms"] = timer(fn, group.leaves)
            row["bwd_ms"] = row["fwd_bwd_ms"] - row["fwd_ms"]
    except Exception as exc:  # noqa: BLE001 - a configuration that fails to build or run is reported
        row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return row


def summarize(group: Group, rows: list[dict], default: dict, sdpa: dict) -> list[dict]:
    out = []
    for mode in REPORTED:
        ok = [r for r in rows if r["status"] == "ok" and r[f"{mode}_ms"] is not None]
        best = min(ok, key=lambda r: r[f"{mode}_ms"], default=None)
        base = next((r for r in rows if r["config"] == default), None)
        entry = {**group.key(), "mode": mode, "sdpa_ms": sdpa[mode],
                 "default": {"config": default, "ms": base[f"{mode}_ms"] if base else None,
                             "status": base["status"] if base else "not measured"},
                 "best": None if best is None else {"config": best["config"], "ms": best[f"{mode}_ms"]},
                 "configs_measured": len(ok)}
        for name in ("default", "best"):
            ms = (entry[name] or {}).get("ms")
            entry[f"speedup_{name}_vs_sdpa"] = sdpa[mode] / ms if ms and sdpa[mode] else None
        out.append(entry)
    return out


def header(cuda: bool, args, preset: str) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    device = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine() or "cpu")
    return {
        "benchmark": "sweep_attention", "preset": preset, "device": device,
        "versions": {"torch": torch.__version__, "triton": triton_version, "python": platform.python_version(),
                     "cuda": torch.version.cuda},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fp32_precision": args.fp32_precision, "budget_s": args.budget_s, "jobs": args.jobs,
        "timing": ("median of triton.testing.do_bench (L2 flushed between calls)" if cuda
                   else "CPU under the Triton interpreter: times mean nothing"),
        "check": f"first {CHECK_B} batch elements vs float64 torch SDPA, rel RMS tolerance {TOL}",
    }


def run_sweep(args, log=print, save=lambda report: None) -> dict:
    """The sweep's report; ``save`` gets the report so far after each (shape, dtype), so a run
    cut short (a crash, a timeout) still leaves the groups it finished."""
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    preset = "smoke" if args.smoke else "quick" if args.quick else "full"
    max_configs, warmup_ms, rep_ms = PRESETS[preset]
    max_configs = args.max_configs or max_configs
    shapes = SMOKE_SHAPES if args.smoke else COLUMN + ROW
    batch = 1 if args.smoke else BATCH
    dtypes = args.dtypes or (["float32", "bfloat16"] if cuda else ["float32"])
    end = t_start + args.budget_s

    plan = []  # (kind, H, L, D, dtype, the table's kwargs, candidates' kwargs with the table's first)
    other = "ieee" if args.fp32_precision == "tf32x3" else "tf32x3"
    for dtype in dtypes:
        for kind, nh, seq, d in shapes:
            default = table_config(seq, d)
            cands = column_candidates(default, dtype) if kind == "column" else row_candidates(default)
            cands = cands[:max_configs]
            if dtype == "float32":
                # The table's tiles with the other fp32 precision: is tf32x3 worth it here?
                cands.insert(1, default._replace(fp32_precision=other))
            kws = [op_kwargs(c, dtype, args.fp32_precision) for c in cands]
            plan.append((kind, nh, seq, d, dtype, kws[0], kws))
    # Ranked order across groups (every group's first choice, then every group's second, ...), so
    # a compile phase cut short by the budget still leaves each group its best-ranked candidates.
    units = []
    for r in range(max(len(p[6]) for p in plan)):
        for i, (_, nh, seq, d, dtype, _, cands) in enumerate(plan):
            if r < len(cands):
                units.append({"id": unit_id(i, r), "H": nh, "L": seq, "D": d, "dtype": dtype, "config": cands[r]})
    log(f"{len(plan)} (shape, dtype) groups, {len(units)} configurations; compiling with {args.jobs} worker(s)")
    compiled = precompile(units, args.jobs, t_start + COMPILE_SHARE * args.budget_s, log)
    t_compiled = time.perf_counter()
    if args.jobs > 0:
        bad = sum(c["status"] != "ok" for c in compiled.values())
        log(f"compiled {len(compiled)}/{len(units)} in {t_compiled - t_start:.1f} s ({bad} failed)")

    timer = make_timer(cuda, warmup_ms, rep_ms)
    results, configs = [], []
    for gi, (kind, nh, seq, d, dtype, default, cands) in enumerate(plan):
        group = Group(kind, nh, seq, d, dtype, batch, device)
        g_end = time.perf_counter() + (end - time.perf_counter()) / (len(plan) - gi)
        sdpa = {mode: timer(fn, group.leaves) for mode, fn in group.fns(F.scaled_dot_product_attention).items()}
        sdpa["bwd"] = sdpa["fwd_bwd"] - sdpa["fwd"]
        rows = []
        for r, kw in enumerate(cands):
            unit = compiled.get(unit_id(gi, r))
            t0 = time.perf_counter()
            if r > 0 and t0 > g_end:
                row = blank_row(kw, "skipped: time budget")
            elif r > 0 and args.jobs > 0 and unit is None:
                row = blank_row(kw, "skipped: not compiled in time")
            elif unit is not None and unit["status"] != "ok":
                row = blank_row(kw, unit["status"])
            else:
                row = measure_config(group, kw, timer)
            # Seconds the worker spent compiling and this process spent checking and timing: a
            # measure_s near the worker's compile_s means the kernels were compiled twice.
            row["compile_s"] = unit["s"] if unit else None
            row["measure_s"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            configs.append({**group.key(), **row})
        entries = summarize(group, rows, default, sdpa)
        results += entries
        for e in entries:
            best = e["best"] or {}
            log(f"{group.label()} {e['mode']:7s} sdpa {_ms(e['sdpa_ms'])}  table {_ms(e['default']['ms'])}  "
                f"best {_ms(best.get('ms'))} {_cfg(best.get('config'))}  ({e['configs_measured']} measured)")
        del group
        if cuda:
            torch.cuda.empty_cache()
        report = {**header(cuda, args, preset), "complete": gi == len(plan) - 1,
                  "elapsed_s": round(time.perf_counter() - t_start, 1), "compile_s": round(t_compiled - t_start, 1),
                  "skipped": sum(r["status"].startswith("skipped") for r in configs),
                  "results": results, "configs": configs}
        save(report)
    log(f"done in {report['elapsed_s']:.1f} s; {report['skipped']} configuration(s) skipped")
    return report


def _ms(x) -> str:
    return "      -" if x is None else f"{x:7.3f}"


def _cfg(c) -> str:
    return "" if not c else f"{c['block_m']}x{c['block_n']} w{c['num_warps']} s{c['num_stages']} {c.get('fp32_precision', '')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the report here")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"{PRESETS['quick'][0]} configurations a shape")
    size.add_argument("--smoke", action="store_true", help="tiny shapes, B=1, 2 configurations (CPU check)")
    ap.add_argument("--max-configs", type=int, default=None, help="candidates a shape (overrides the preset)")
    ap.add_argument("--dtypes", type=lambda s: [x for x in s.split(",") if x], default=None,
                    help="comma-separated (default: float32,bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--budget-s", type=float, default=75.0,
                    help="wall-clock bound of the sweep after start-up (imports, CUDA init: ~5 s more)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="compile worker processes (default: CPU cores - 1 on CUDA, 0 on CPU)")
    ap.add_argument("--fp32-precision", choices=("tf32x3", "ieee"), default=attn._FP32_PRECISION)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    for name in args.dtypes or ():
        if name not in TOL:
            ap.error(f"--dtypes: {name!r} is not one of {sorted(TOL)}")
    if args.max_configs is not None and args.max_configs < 1:
        ap.error("--max-configs must be >= 1")
    if not torch.cuda.is_available() and not attn.interpreted(attn._attn_fwd_kernel):
        ap.error("without CUDA the kernels run only under the Triton interpreter: set TRITON_INTERPRET=1")
    if args.jobs is None:
        args.jobs = max(1, min(16, (os.cpu_count() or 2) - 1)) if torch.cuda.is_available() else 0
    def save(report: dict) -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    report = run_sweep(args, save=save)
    if args.json is not None:
        print(f"wrote {args.json}")
    # The table's own configuration must pass the check: anything else is a kernel bug.
    broken = [r for r in report["results"] if not r["default"]["status"] == "ok"]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
