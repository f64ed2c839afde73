"""What every benchmark shares: timing, peak memory, environment facts, the report header.

Timings are medians after warm-up (CUDA events on a GPU, perf_counter on CPU). Peak memory on a
GPU is torch.cuda.max_memory_allocated above what was allocated before the call; on CPU it is
the peak RSS during the step above the RSS before it (Linux: the high-water mark is reset
through /proc/self/clear_refs). CPU providers still run in fresh subprocesses
(:func:`run_isolated`), so one provider's freed-but-cached memory cannot hide another's.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Peak memory bandwidth of the GPUs we report on (bytes/s), for the fraction-of-bound column.
BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def git_commit() -> str | None:
    """The checkout's HEAD; ``$TNFAST_GIT_COMMIT`` names it for a copy of the tree without .git."""
    if os.environ.get("TNFAST_GIT_COMMIT"):
        return os.environ["TNFAST_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001 - no git, not a checkout, ...: the commit is optional
        return None


def device_name(cuda: bool) -> str:
    if cuda:
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def bandwidth_bound(cuda: bool) -> float | None:
    if not cuda:
        return None
    name = torch.cuda.get_device_name()
    return next((bw for key, bw in BANDWIDTH.items() if key in name), None)


def versions() -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "python": platform.python_version(),
            "cuda": torch.version.cuda}


def header(benchmark: str, scale: str, cuda: bool, warmup: int, repeats: int) -> dict:
    return {
        "benchmark": benchmark, "scale": scale, "device": device_name(cuda),
        "device_type": "cuda" if cuda else "cpu", "cpu_threads": torch.get_num_threads(),
        "versions": versions(), "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warmup": warmup, "repeats": repeats,
        "timing": "median of cuda.Event times" if cuda else "median of time.perf_counter times",
        "peak_memory": ("torch.cuda.max_memory_allocated above the inputs" if cuda
                        else "growth of peak RSS over one step, in a fresh process per provider"),
    }


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def peak_rss_mib() -> float:
    """The process's RSS high-water mark (MiB) since the start or the last :func:`reset_peak_rss`."""
    return _status_mib("VmHWM")


def reset_peak_rss() -> float:
    """Reset the process's RSS high-water mark; return the current RSS (MiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def measure(step: Callable[[], object], warmup: int, repeats: int, cuda: bool) -> dict:
    """Median and spread (ms) of ``step`` after warm-up, and its peak memory (MiB)."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = reset_peak_rss()
    step()  # the first call also sets the peak
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = peak_rss_mib() - base
    for _ in range(max(warmup - 1, 0)):
        step()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "peak_mib": peak}


def run_isolated(module: str, args: list[str], timeout: float = 3600) -> dict:
    """Run ``python -m module ARGS`` (a benchmark's worker) in a fresh process; the JSON it prints last."""
    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"error: worker exited {r.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def run_worker(module: str, args: list[str], cuda: bool) -> dict:
    """A benchmark's worker (``module.worker(module.parser().parse_args(args))``) as one row's result.

    On CPU it runs in a fresh process (:func:`run_isolated`), so peak RSS is the provider's own.
    On CUDA it runs in this process: the allocator's peak counter is reset per measurement, so
    isolation buys nothing, and the loaded data is reused. An exception (an out-of-memory, a
    compile error) becomes the row's status instead of ending the benchmark.
    """
    if not cuda:
        return run_isolated(module, args)
    mod = importlib.import_module(module)
    try:
        return mod.worker(mod.parser().parse_args(args))
    except Exception as exc:  # noqa: BLE001 - reported in the row, the other providers still run
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return {"status": f"error: {type(exc).__name__}: {first}"}
    finally:
        torch.cuda.empty_cache()


def csv(text: str) -> tuple[str, ...]:
    """'a,b,' -> ('a', 'b'): the comma-separated options of the benchmark scripts."""
    return tuple(x for x in text.split(",") if x)


def script_main(args, worker: Callable | None, benchmark: Callable[[], dict]) -> int:
    """A benchmark's ``python -m`` entry: with ``--worker`` one worker's JSON line, else the whole
    benchmark, its report written to ``--json``; exit 1 if a provider failed its check or errored."""
    if worker is not None and args.worker:
        print(json.dumps(worker(args)))
        return 0
    report = benchmark()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r["status"].startswith(("check failed", "error")) for r in report["results"]) else 0


@functools.lru_cache(maxsize=1)
def synthetic_bundle(scale: str):
    """The synthetic bundle of ``scale`` (the cached default; tiny is generated), without truth."""
    from tnfast.data.bundle import load_bundle
    from tnfast.data.synth import default_bundle, synthesize

    return synthesize("tiny") if scale == "tiny" else load_bundle(default_bundle(scale), truth=False)


# --scale tiny: a model of seconds on the tiny bundle (the harness is what is tested there)
TINY_MODEL = dict(gene_embedding_dim=8, structural_dim=4, gat_heads=2, gat_head_dim=4, fusion_dim=8,
                  embedding_dim=16, recon_edges=64, fundnn_hidden=(16,), row_heads=1, row_head_dim=8,
                  col_heads=1, col_head_dim=4, landmark_dim=4, ff_dim=16, blocks=1, recycles=2)


def bench_config(scale: str, cuda: bool, sets: list[str] = (), profile: str | None = None):
    """The run configuration ``tnfast train`` would use on the device (profile ``full`` on CUDA,
    ``quick`` on CPU, unless ``profile`` is given) with ``--set`` overrides; at ``--scale tiny``
    the model is TINY_MODEL."""
    from dataclasses import replace

    from tnfast.train_config import resolve

    profile = profile or ("full" if cuda else "quick")
    cfg = resolve(profile, sets=list(sets), default_profile=profile)
    return replace(cfg, model=cfg.model.replace(**TINY_MODEL)) if scale == "tiny" else cfg
