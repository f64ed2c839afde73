"""A run is used only with the bundle it was trained on: run.json and train.json record the
bundle's content digest, and infer, evaluate and --resume refuse a bundle that changed since."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, tnfast

from tnfast.data.bundle import Locations, load_bundle
from tnfast.data.synth import synthesize
from tnfast.runs import bundle_fingerprint, read_run

TINY = Path(__file__).parent / "data" / "tiny_model.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fingerprint")
    synthesize("tiny", seed=3).save(d / "tiny")
    return d / "tiny"


def test_fingerprint_follows_the_content_not_the_files(tiny, tmp_path):
    b = load_bundle(tiny)
    fp = bundle_fingerprint(b)
    b.save(tmp_path / "again")  # the same arrays written again
    assert bundle_fingerprint(load_bundle(tmp_path / "again")) == fp
    truthless = replace(b, truth={})  # evaluation's truth is not part of what a model reads
    assert bundle_fingerprint(truthless) == fp

    s = b.signatures["RNAi"]
    changed = {
        "gene ids": replace(b, genes=np.roll(b.genes, 1)),
        "landmarks": replace(b, landmarks=np.roll(b.landmarks, 1)),
        "a split": replace(b, signatures={**b.signatures, "RNAi": replace(s, split=np.roll(s.split, 1))}),
        "a value": replace(b, signatures={**b.signatures, "RNAi": replace(s, values=s.values + np.float32(1e-3))}),
        "no OE": replace(b, signatures={t: v for t, v in b.signatures.items() if t != "OE"}),
        "features": replace(b, features=replace(b.features, values=b.features.values[::-1].copy())),
        "a layer dropped": replace(b, networks=dict(list(b.networks.items())[1:])),
        "locations": replace(b, gene_locations=Locations(np.full(b.n_genes, "1"), np.zeros(b.n_genes, np.int64),
                                                           np.full(b.n_genes, "p")),
                             landmark_locations=Locations(np.full(len(b.landmarks), "1"),
                                                          np.ones(len(b.landmarks), np.int64),
                                                          np.full(len(b.landmarks), "q"))),
    }
    digests = {name: bundle_fingerprint(x) for name, x in changed.items()}
    assert fp not in digests.values()
    assert len(set(digests.values())) == len(digests)


def _swap_bundle(tiny: Path, at: Path) -> None:
    """Put at ``at`` a bundle of the same shape as ``tiny`` (same gene count, layers, landmarks)
    with other genes and signatures, as a re-import in place would."""
    shutil.rmtree(at)
    synthesize("tiny", seed=4).save(at)
    a, b = load_bundle(tiny), load_bundle(at)
    assert a.n_genes == b.n_genes and list(a.networks) == list(b.networks)


@pytest.mark.parametrize("model", ["ridge", "transcriptionnet"])
def test_infer_and_evaluate_refuse_a_changed_bundle(tiny, tmp_path, model):
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    args = ["--config", TINY, "--set", "train.steps=4"] if model == "transcriptionnet" else []
    r = tnfast("train", "--data", data, "--out", tmp_path / "run", "--model", model, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_run(tmp_path / "run")["bundle"] == bundle_fingerprint(load_bundle(data))
    r = tnfast("infer", "--run", tmp_path / "run", "--out", tmp_path / "ok.zarr", cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # the same bundle: fine

    _swap_bundle(tiny, data)
    for cmd in (["infer", "--run", tmp_path / "run", "--out", tmp_path / "p.zarr"],
                ["evaluate", "--run", tmp_path / "run"],
                ["evaluate", "--preds", tmp_path / "ok.zarr", "--run", tmp_path / "run"]):
        r = tnfast(*cmd, cwd=tmp_path)
        error_line(r, "run.json", "not the one this run was trained on")
    assert not (tmp_path / "p.zarr").exists()


def test_a_run_saved_before_the_digest_still_loads(tiny, tmp_path):
    r = tnfast("train", "--data", tiny, "--out", tmp_path / "run", "--model", "ridge", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    f = tmp_path / "run" / "run.json"
    run = json.loads(f.read_text())
    del run["bundle"]
    f.write_text(json.dumps(run))
    r = tnfast("infer", "--run", tmp_path / "run", "--out", tmp_path / "p.zarr", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_resume_refuses_a_changed_bundle(tiny, tmp_path):
    """An interrupted run (train.json, no run.json) resumed after its bundle was replaced."""
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "tnfast", "train", "--data", str(data), "--config", str(TINY),
                             "--set", "train.patience=100", "--out", str(out)], cwd=tmp_path,
                            env={**os.environ, "TNFAST_RUNS": str(tmp_path / "runs")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "train.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "train.json").exists() and not (out / "run.json").exists()
    assert json.loads((out / "train.json").read_text())["bundle"] == bundle_fingerprint(load_bundle(data))

    _swap_bundle(tiny, data)
    r = tnfast("train", "--resume", "--out", out, cwd=tmp_path)
    error_line(r, "train.json", "not the one this run was trained on")
    assert not (out / "run.json").exists()
