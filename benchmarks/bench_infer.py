"""Benchmark whole-genome inference into preds.zarr (issue 8): genes per second and peak memory.

A short training run of the device's default profile (``full`` on CUDA, ``quick`` on CPU; a toy
model at ``--scale tiny``) gives a real run directory (speed does not depend on how well it is
trained). Then every gene of the bundle, all three types, is predicted into a fresh Zarr store:

* ``command``    — ``tnfast infer --run RUN --out preds.zarr`` as a user runs it, in a fresh
  process: wall time end to end (interpreter start, imports, loading the bundle and the model,
  the encoder pass, every chunk, the store's metadata); peak memory is the process's peak RSS
  and, on CUDA, the device's peak allocation;
* ``in_process`` — ``tnfast.infer.infer`` called in this process (imports and the bundle's page
  cache warm): the part the model and the store cost.

Each provider's store is checked against the run's predictor on a sample of genes.
There is no peer: nothing else predicts these signatures; the goals (README) are absolute.

    tnfast bench infer --scale full --json benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .harness import bench_config, header, rel_rms, script_main

RUNS = {"tiny": 1, "small": 2, "full": 1}  # timed repeats of each provider after one warm-up
CHECK_GENES = 64


def make_run(scale: str, device: str, work: Path, log) -> tuple[Path, str]:
    """A real run directory from a two-step training run; (its path, its profile)."""
    from tnfast.data.synth import default_bundle, synthesize
    from tnfast.train import train

    if scale == "tiny":
        data = work / "bundle"
        synthesize("tiny").save(data)
    else:
        data = default_bundle(scale)
    cfg = bench_config(scale, device == "cuda",
                       ["train.pretrain_steps=0", "train.steps=2", "train.eval_every=2", "train.batch_size=16"])
    log(f"training a 2-step {cfg.profile} run on {device} to infer from")
    run_dir, _ = train(data, work / "run", cfg, device)
    return run_dir, cfg.profile


def _command(run_dir: Path, out: Path, device: str) -> dict:
    """``tnfast infer`` in a fresh process: wall seconds and that process's own peak RSS."""
    cmd = [sys.executable, "-m", "tnfast", "infer", "--run", str(run_dir), "--out", str(out), "--device", device,
           "--overwrite"]
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage, not the maximum over all children
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errf.seek(0)
            last = (errf.read().decode(errors="replace").strip().splitlines() or [""])[-1]
            raise RuntimeError(f"tnfast infer exited {proc.returncode}: {last}")
    return {"seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def _in_process(run_dir: Path, out: Path, device: str) -> dict:
    from tnfast.infer import infer

    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    infer(out, run_dir, overwrite=True, device=device)
    if cuda:
        torch.cuda.synchronize()
    row = {"seconds": time.perf_counter() - t0}
    if cuda:
        row["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def check_store(out: Path, run_dir: Path, device: str) -> float:
    """Max relative RMS error of the store against the run's predictor on CHECK_GENES genes."""
    import zarr

    from tnfast.data.bundle import TYPES
    from tnfast.predict import ALL_SPLITS, load_predictor

    root = zarr.open_group(out, mode="r")
    if not root.attrs.get("complete"):
        raise RuntimeError(f"{out} is not marked complete")
    pred = root["predictions"]
    predictor = load_predictor(run_dir, inputs=ALL_SPLITS, device=device)
    genes = np.unique(np.linspace(0, pred.shape[1] - 1, CHECK_GENES).astype(int))
    want = predictor.predict_types(list(TYPES), genes)
    return rel_rms(torch.from_numpy(pred.oindex[:, genes]), torch.from_numpy(want))


def run_benchmark(scale: str = "tiny", device: str | None = None, log=print) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    repeats = RUNS[scale]
    results = []
    with tempfile.TemporaryDirectory(prefix="tnfast-bench-infer-") as tmp:
        work = Path(tmp)
        run_dir, profile = make_run(scale, device, work, log)
        n_genes = json.loads((run_dir / "run.json").read_text())["dims"]["n_genes"]
        out = work / "preds.zarr"
        for prov, fn in (("command", _command), ("in_process", _in_process)):
            row = {"provider": prov, "profile": profile, "genes": n_genes, "types": 3, "median_ms": None,
                   "status": "ok"}
            try:
                runs = [fn(run_dir, out, device) for _ in range(1 + repeats)]  # the first is the warm-up
                row["max_rel_rms"] = err = check_store(out, run_dir, device)
                if not err <= 1e-5:
                    row["status"] = f"check failed: rel RMS {err:.2e} against the predictor"
                secs = [r["seconds"] for r in runs[1:]]
                row.update(median_ms=statistics.median(secs) * 1e3, min_ms=min(secs) * 1e3, max_ms=max(secs) * 1e3,
                           genes_per_s=n_genes / statistics.median(secs))
                for key in ("peak_rss_mib", "peak_cuda_mib"):
                    vals = [r[key] for r in runs if r.get(key) is not None]
                    if vals:
                        row[key] = max(vals)
            except RuntimeError as exc:
                row["status"] = f"error: {str(exc)[:300]}"
            results.append(row)
            log(fmt(row))
    return {**header("infer", scale, device == "cuda", 1, repeats), "results": results,
            "peak_memory": "command: the process's peak RSS (and device peak in process); "
                           "in_process: torch.cuda.max_memory_allocated"}


def fmt(row: dict) -> str:
    if row["median_ms"] is None:
        return f"infer    {row['provider']:11s} -  [{row['status']}]"
    mem = "".join(f"  {k.removeprefix('peak_').removesuffix('_mib')} {row[k]:.0f} MiB"
                  for k in ("peak_rss_mib", "peak_cuda_mib") if row.get(k))
    st = "" if row["status"] == "ok" else f"  [{row['status']}]"
    return (f"infer    {row['provider']:11s} {row['genes']} genes x 3 types  {row['median_ms'] / 1e3:.2f} s  "
            f"{row['genes_per_s']:.0f} genes/s{mem}{st}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(RUNS), default="tiny")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    return script_main(args, None, lambda: run_benchmark(args.scale, args.device))


if __name__ == "__main__":
    sys.exit(main())
