"""``tnfast bench``: run the benchmarks, print their rows, and write one JSON report per device.

The report: the device, versions, git commit and date once at the top, then each benchmark's
own report (its timing method, warm-up and repeats, and one row per provider and shape) under
``benchmarks``. Rows carry ``speedup_vs_<peer>`` = peer time / tnfast time for peers measured in
the same run, so > 1 means tnfast is faster. CPU timings are meant to be read as those ratios
(shared machines are noisy); absolute times are meaningful only from a GPU.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from tnfast.atomic import atomic_file

from .harness import device_name, git_commit, versions

BENCHMARKS = ("gat", "attention", "train", "infer")
# Runs by name only, not in "all": at full scale it is a training run of its own (an hour on CPU).
LONG = ("integrate",)
SCALES = ("tiny", "small", "full")
FORMAT_VERSION = 1


def device_slug(cuda: bool) -> str:
    """File-name form of the device: 'nvidia-h200', or 'cpu-2core' (cores, not the model name)."""
    if not cuda:
        return f"cpu-{len(os.sched_getaffinity(0))}core"
    return re.sub(r"[^a-z0-9]+", "-", device_name(True).lower()).strip("-")


def report_path(json_path: Path, cuda: bool, date: str) -> Path:
    """``json_path`` itself when it names a .json file, else ``<device>-<date>.json`` inside it
    (a directory, made if need be: the CLI's Path has already dropped any trailing slash)."""
    if json_path.is_dir() or json_path.suffix.lower() != ".json":
        return json_path / f"{device_slug(cuda)}-{date}.json"
    return json_path


def run(which: str = "all", scale: str = "tiny", device: str = "auto",
        log: Callable[[str], None] = print) -> dict:
    """Run ``which`` (one of BENCHMARKS, or 'all') at ``scale`` on ``device``; the combined report."""
    names = BENCHMARKS if which == "all" else (which,)
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = "cuda" if cuda else "cpu"
    now = _dt.datetime.now(_dt.timezone.utc)
    report = {"format": "tnfast-bench", "version": FORMAT_VERSION, "scale": scale, "device": device_name(cuda),
              "device_type": dev, "versions": versions(), "git_commit": git_commit(),
              "date": now.isoformat(timespec="seconds"), "benchmarks": {}}
    for name in names:
        log(f"== {name} ({scale}, {dev})")
        module = importlib.import_module(f"tnfast.benchmarks.bench_{name}")
        report["benchmarks"][name] = module.run_benchmark(scale=scale, device=dev, log=log)
    return report


def failures(report: dict) -> list[str]:
    """One line per row whose provider failed its correctness check or errored."""
    return [f"{name}: {row['provider']}: {row['status']}"
            for name, b in report["benchmarks"].items() for row in b["results"]
            if row["status"].startswith(("check failed", "error"))]


def write(report: dict, json_path: Path) -> Path:
    path = report_path(json_path, report["device_type"] == "cuda", report["date"][:10])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path
