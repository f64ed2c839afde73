"""Where runs live and how they are found.

`tnfast train` writes each run to its own directory under the runs root: ``$TNFAST_RUNS`` if
set, else ``./runs`` in the working directory. A run directory is complete when its
``run.json`` exists (written last); `tnfast infer` without --run takes the newest complete one.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from .errors import InputError

RUN_FORMAT = "tnfast-run"
RUN_VERSION = 1


def runs_root() -> Path:
    return Path(os.environ.get("TNFAST_RUNS", "runs"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def latest_run() -> Path:
    root = runs_root()
    runs = sorted(p.parent for p in root.glob("*/run.json")) if root.is_dir() else []
    if not runs:
        raise InputError(root, "no complete run found; run `tnfast train` first or pass --run DIR")
    return max(runs, key=lambda p: (json.loads((p / "run.json").read_text()).get("created", 0), p.name))


def read_run(path: str | os.PathLike) -> dict:
    d = Path(path)
    f = d / "run.json"
    if not f.is_file():
        raise InputError(d, "not a complete tnfast run directory (no run.json)")
    try:
        run = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f, f"invalid JSON ({e.msg})", place=f"line {e.lineno}") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        raise InputError(f, f"expected \"format\": \"{RUN_FORMAT}\"")
    if not isinstance(run.get("version"), int) or run["version"] > RUN_VERSION:
        raise InputError(f, f"run format version {run.get('version')!r}; this tnfast reads up to {RUN_VERSION}")
    return run
