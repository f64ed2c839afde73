"""Where runs live and how they are found.

`tnfast train` writes each run to its own directory under the runs root: ``$TNFAST_RUNS`` if
set, else ``./runs`` in the working directory. A run directory is complete when its
``run.json`` exists (written last); `tnfast infer` without --run takes the newest complete one.
A run keeps the network embedding it was trained with (``embedding.npy``, see tnfast.embed),
and the weights of each member of its ensemble (``model.pt``, then ``model.1.pt``, ...).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_file
from .data.bundle import load_npy
from .errors import InputError
from .metrics import mean_se, paired_lead, pearson_delta, row_pearson

RUN_FORMAT = "tnfast-run"
# 2: the network embedding became eigenvectors, saved with the run (version 1 recomputed
# propagated random projections); a version-1 model would read inputs it never saw
# 3: ensembles (train.ensemble members, weights in model.pt, model.1.pt, ...; run.json
# "members"); a version-2 run is a one-member run and reads as one
RUN_VERSION = 3
OLDEST_READ = 2
EMBEDDING = "embedding.npy"


def member_weights(run_dir: Path, k: int) -> Path:
    """Where member ``k`` of a run's ensemble keeps its weights (member 0, the only one of most
    runs, in ``model.pt``)."""
    return run_dir / ("model.pt" if k == 0 else f"model.{k}.pt")


def runs_root() -> Path:
    return Path(os.environ.get("TNFAST_RUNS", "runs"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _newest(marker: str, complete: bool) -> Path | None:
    """The run directory under the runs root holding ``marker`` (a JSON file with "created"),
    complete (with run.json) or not, that was created last; None if there is none."""
    root = runs_root()
    dirs = [p.parent for p in root.glob(f"*/{marker}")
            if (p.parent / "run.json").exists() == complete] if root.is_dir() else []
    return max(dirs, key=lambda d: (read_json(d / marker).get("created", 0), d.name), default=None)


def latest_run() -> Path:
    run = _newest("run.json", complete=True)
    if run is None:
        raise InputError(runs_root(), "no complete run found; run `tnfast train` first or pass --run DIR")
    return run


def latest_incomplete_run() -> Path:
    """The newest run directory that started training (train.json) but has no run.json."""
    run = _newest("train.json", complete=False)
    if run is None:
        raise InputError(runs_root(), "no interrupted run to resume; pass --out RUN_DIR")
    return run


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"cannot read ({e})") from None


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
    if run["version"] < OLDEST_READ:
        raise InputError(f, f"was saved by an older tnfast (run format version {run['version']}; its network "
                            f"inputs differ from this tnfast's, version {RUN_VERSION}); train the run again")
    return run


def bundle_fingerprint(bundle) -> str:
    """A digest of everything in ``bundle`` a model learns from or is scored on: gene and
    landmark ids, each type's signatures (genes, splits, values), the features, the networks and
    the gene locations (not the synthetic truth, which only evaluation reads). A run records it
    and is loaded only with a bundle of the same digest: a bundle re-imported in place with
    other genes or another split has the same shapes, and the run would silently predict the
    wrong genes, or be scored on genes it trained on. Content, not files: the same arrays
    written again give the same digest."""
    h = hashlib.blake2b(digest_size=16)

    def add(tag: str, arr, dtype: str | None = None) -> None:
        a = np.asarray(arr)
        if dtype is None:  # ids and labels: their text, whatever width numpy gave the array
            a = np.frombuffer("\x1f".join(map(str, a.tolist())).encode(), np.uint8)
        else:
            a = np.ascontiguousarray(a, dtype)
        h.update(f"{tag}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))

    add("genes", bundle.genes)
    add("landmarks", bundle.landmarks)
    for t in sorted(bundle.signatures):
        s = bundle.signatures[t]
        add(f"{t}.gene", s.gene, "<i8")
        add(f"{t}.split", s.split)
        add(f"{t}.values", s.values, "<f4")
    if bundle.features is not None:
        add("features", bundle.features.values, "<f4")
        add("present", bundle.features.present, "u1")
    for name, c in bundle.networks.items():  # in manifest order: the model's layer order
        add(f"net.{name}", c.indptr, "<i8")
        add(f"net.{name}.indices", c.indices, "<i4")
        add(f"net.{name}.weights", c.weights, "<f4")
    for who, loc in (("gene", bundle.gene_locations), ("landmark", bundle.landmark_locations)):
        if loc is not None:
            add(f"{who}.chromosome", loc.chromosome)
            add(f"{who}.start", loc.start, "<i8")
            add(f"{who}.arm", loc.arm)
    return h.hexdigest()


def check_same_bundle(record: dict, bundle, where: Path) -> None:
    """Refuse ``bundle`` for the run (or interrupted run) whose run.json / train.json is
    ``record`` (read from ``where``) unless it is the bundle the run was trained on. Runs saved
    before runs recorded it pass unchecked."""
    want = record.get("bundle")
    if want is not None and want != bundle_fingerprint(bundle):
        raise InputError(where, f"the bundle {record.get('data')} is not the one this run was trained on "
                                f"(its genes, signatures, features, networks or locations changed since); "
                                f"train again on it, or restore the original bundle")


def save_embedding(run_dir: Path, x: np.ndarray) -> None:
    """Write the run's (n_genes, p) float32 network embedding atomically."""
    with atomic_file(run_dir / EMBEDDING) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(x, np.float32))


def load_embedding(run_dir: Path, bundle, dim: int) -> np.ndarray:
    """The run's saved network embedding, checked to be float32 of ``dim`` columns per network
    layer of ``bundle`` and a row per gene."""
    shape = (bundle.n_genes, len(bundle.networks) * dim)
    x = load_npy(run_dir / EMBEDDING, "the run's network embedding")
    if x.dtype != np.float32 or x.shape != shape:
        raise InputError(run_dir / EMBEDDING, f"float32 array of shape {shape} expected, got {x.dtype} "
                                              f"{x.shape} (the bundle changed since training?)")
    return x


def signature_scores(pred: np.ndarray, truth: np.ndarray, mean: np.ndarray) -> dict:
    """n, mean PCC, mean PearsonΔ (around ``mean``, the training mean) with its s.e., MSE of
    (n, L) predictions, and their PCC's lead over the mean's with its paired s.e.
    (:func:`tnfast.metrics.paired_lead`)."""
    pcc, pd = row_pearson(pred, truth), pearson_delta(pred, truth, mean)
    lead, lead_se = paired_lead(pcc, row_pearson(np.broadcast_to(mean, truth.shape), truth))
    return {"n": len(truth), "pcc": float(pcc.mean()), "pearson_delta": float(pd.mean()),
            "pearson_delta_se": mean_se(pd),
            "mse": float(((pred - truth) ** 2).mean()), "pcc_over_mean": lead, "pcc_over_mean_se": lead_se}


def pool_scores(scores: list[dict], keys: Sequence[str] | None = None) -> dict:
    """Scores of disjoint sets of signatures (:func:`signature_scores`, or an evaluation's per
    predictor), as one: n summed, means weighted by n, each ``*_se`` the s.e. of such a mean
    from theirs. ``keys``: which to pool (default: all but n), of them those every part has."""
    n = sum(s["n"] for s in scores)
    keys = [k for k in (keys or scores[0]) if k != "n" and all(k in s for s in scores)]

    def pool(key: str) -> float:
        if key.endswith("_se"):
            return math.sqrt(sum((s["n"] * s[key]) ** 2 for s in scores)) / n
        return sum(s["n"] * s[key] for s in scores) / n

    return {"n": n, **{key: pool(key) for key in keys}}


def split_scores(bundle, predict: Callable[[str, np.ndarray], np.ndarray], types: Sequence[str],
                 splits: Sequence[str] = ("valid", "test"), train_splits: Sequence[str] = ("train",)) -> dict:
    """What a run records about itself: per type and split, PCC, PearsonΔ and MSE of the model
    (``predict(type, gene indices) -> (n, L)``), of the training-mean signature (the mean of the
    ``train_splits`` rows) and, on synthetic data, of the noise-free truth (the ceiling)."""
    summary: dict = {}
    for t in types:
        s = bundle.signatures[t]
        # in float64, as tnfast evaluate does: where a prediction is close to the mean, a float32
        # mean's rounding shows in PearsonΔ
        mean = np.asarray(s.values[np.isin(s.split, list(train_splits))], np.float64).mean(axis=0)
        summary[t] = {}
        for split in splits:
            rows = s.rows(split)
            if not len(rows):
                continue
            truth, genes = s.values[rows], s.gene[rows]
            summary[t][split] = {"model": signature_scores(predict(t, genes), truth, mean),
                                 "mean": signature_scores(np.broadcast_to(mean, truth.shape), truth, mean)}
            if t in bundle.truth:
                summary[t][split]["oracle"] = signature_scores(np.asarray(bundle.truth[t][genes]), truth, mean)
    return summary


def run_record(run_id: str, model: str, data: Path, types: Sequence[str], config: dict, metrics: dict,
               **extra) -> str:
    """The text of run.json (written last: its presence marks a complete run)."""
    run = {"format": RUN_FORMAT, "version": RUN_VERSION, "run_id": run_id, "created": time.time(),
           "tnfast": __version__, "model": model, "data": str(data), "types": list(types),
           "config": config, "metrics": metrics, **extra}
    return json.dumps(run, indent=2) + "\n"
