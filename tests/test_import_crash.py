"""`tnfast data import` killed with SIGKILL at any moment leaves no bundle or a whole one.

A real subprocess imports a generated GCTX, edge list and feature matrix (a second or two of
work) and is killed at each of its progress messages (read from its stderr) and at moments
inside the final write. Afterwards the bundle path is absent or loads as a complete bundle
equal to an uninterrupted import, and running the import again gives that same bundle and
removes the hidden temporaries the kill left beside it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tnfast

from tnfast.data.bundle import load_bundle
from tnfast.data.gctx import GCT, write_gctx

N_GENES, N_SIGS, N_EDGES, N_FEATURES = 20000, 2000, 60_000, 96


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, list]:
    d = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(7)
    genes = rng.choice(np.arange(1, N_GENES + 1), N_SIGS, replace=False)
    codes = np.array(["trt_sh", "trt_xpr", "trt_oe"])[rng.integers(0, 3, N_SIGS)]
    write_gctx(d / "sig.gctx", GCT(rng.normal(size=(978, N_SIGS)).astype(np.float32),
                                   np.arange(1, 979).astype(str), np.char.add(np.char.add(codes, ":"), genes.astype(str)),
                                   {}, {"pert_type": codes, "pert_gene_id": genes.astype(np.int64)}))
    a, b = rng.integers(1, N_GENES + 1, (2, N_EDGES))
    w = rng.uniform(0.1, 1, N_EDGES)
    (d / "ppi.tsv").write_text("".join(f"{x}\t{y}\t{z:.4f}\n" for x, y, z in zip(a.tolist(), b.tolist(), w.tolist())))
    np.save(d / "feat.npy", rng.normal(size=(N_GENES, N_FEATURES)).astype(np.float32))
    (d / "feat_genes.txt").write_text("".join(f"{g}\n" for g in range(1, N_GENES + 1)))
    args = ["--signatures", d / "sig.gctx", "--edges", f"ppi={d / 'ppi.tsv'}", "--features", d / "feat.npy",
            "--feature-genes", d / "feat_genes.txt"]
    return d, args


def imported(d: Path, args: list, *extra) -> Path:
    out = d / "bundle"
    r = tnfast("data", "import", "--out", out, *args, *extra, cwd=d)
    assert r.returncode == 0, r.stderr
    return out


def assert_same(a, b) -> None:
    for name in ("genes", "landmarks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert list(a.networks) == list(b.networks)
    for k in a.networks:
        for x, y in zip(a.networks[k], b.networks[k]):
            np.testing.assert_array_equal(x, y)
    for field in ("values", "present", "names"):
        np.testing.assert_array_equal(getattr(a.features, field), getattr(b.features, field))
    assert list(a.signatures) == list(b.signatures)
    for t in a.signatures:
        for field in ("gene", "values", "split"):
            np.testing.assert_array_equal(getattr(a.signatures[t], field), getattr(b.signatures[t], field))
    assert a.meta == b.meta


def kill_during(out: Path, args: list, marker: str | None, delay: float, *extra) -> tuple[int, list[str]]:
    """Start an import, SIGKILL it ``delay`` s after the stderr line containing ``marker`` (or after start)."""
    p = subprocess.Popen([sys.executable, "-m", "tnfast", "data", "import", "--out", str(out),
                          *map(str, args), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        if marker is not None:
            for line in p.stderr:
                seen.append(line.rstrip())
                if marker in line:
                    break
            else:
                pytest.fail(f"no progress line with {marker!r}: {seen}")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    return p.returncode, hidden_siblings(out)


def hidden_siblings(out: Path) -> list[str]:
    return sorted(x.name for x in out.parent.iterdir() if x.name.startswith(f".{out.name}."))


# At each progress message, a moment into reading the edge list, and through the final write.
KILLS = [(None, 0.3), ("reading signatures", 0.0), ("reading edges", 0.3), ("gene universe", 0.0),
         ("layer ppi", 0.0), ("writing", 0.0), ("writing", 0.01), ("writing", 0.03), ("writing", 0.08)]


def test_import_killed_at_any_moment(tmp_path, inputs):
    _, args = inputs
    (tmp_path / "ref").mkdir()
    reference = load_bundle(imported(tmp_path / "ref", args))
    mid_write = 0
    for i, (marker, delay) in enumerate(KILLS):
        d = tmp_path / f"kill{i}"
        d.mkdir()
        rc, hidden = kill_during(d / "bundle", args, marker, delay)
        state = f"killed at {marker!r} + {delay}s: rc {rc}, hidden siblings {hidden}"
        assert rc in (-signal.SIGKILL, 0), state
        mid_write += any(h.endswith(".tmp") for h in hidden) and marker == "writing"
        if (d / "bundle").exists():  # finished before the kill: then it is whole
            assert_same(load_bundle(d / "bundle"), reference)
        # Running it again (over whatever the kill left) gives the uninterrupted result, and
        # clears the dead run's temporaries.
        assert_same(load_bundle(imported(d, args, "--overwrite")), reference)
        assert hidden_siblings(d / "bundle") == [], state
    # The interesting case was hit: at least one kill came while the bundle was being written.
    assert mid_write >= 1


def test_overwrite_killed_while_writing_keeps_old_or_new(tmp_path, inputs):
    """--overwrite killed during the write: the old bundle or the new one, never a mix or a half."""
    _, args = inputs
    (tmp_path / "new").mkdir()
    new = load_bundle(imported(tmp_path / "new", args, "--seed", "1"))
    old, states = None, []
    for i, delay in enumerate((0.01, 0.1, 0.3)):
        d = tmp_path / f"over{i}"
        d.mkdir()
        out = imported(d, args)
        old = old or load_bundle(out)
        kill_during(out, args, "writing", delay, "--overwrite", "--seed", "1")
        if out.exists():
            got = load_bundle(out)
            states.append("old" if got.meta["seed"] == 0 else "new")
            assert_same(got, old if states[-1] == "old" else new)
        else:
            states.append("absent")
    assert old.meta != new.meta and "old" in states, states
