import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The interpreter must be chosen before triton (and so tnfast.kernels) is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need real data skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def error_line(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The bad-input contract of a finished command: exit 2, no traceback, and stderr's one line
    besides progress notes ("· ...") is the error, its last line, holding every fragment.
    Returns that line."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("· ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert r.stderr.strip().splitlines()[-1] == lines[0], r.stderr  # no note after the error
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tnfast(*args, cwd, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the real command line (`python -m tnfast ARGS`) in ``cwd``, as a user would.

    Runs go to ``cwd/runs`` (TNFAST_RUNS), so nothing lands in the checkout. Shared by the test
    modules that drive the CLI: ``from conftest import tnfast``.
    """
    env = {**os.environ, "TNFAST_RUNS": str(Path(cwd) / "runs"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "tnfast", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def without_fitted_term(run_dir: Path, tmp_path: Path, prefix: str, option: str, n_types: int) -> tuple[Path, Path]:
    """Two copies of a one-member run: ``off``, its weights with the post-training term
    ``prefix`` switched off (``{prefix}.on`` zero), and ``old``, as saved before the term existed
    (no ``{prefix}.*`` tensors, no ``option`` in the config). Both must predict alike."""
    import torch

    off, old = tmp_path / "off", tmp_path / "old"
    for d in (off, old):
        shutil.copytree(run_dir, d)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    torch.save({**state, f"{prefix}.on": torch.zeros(n_types, dtype=torch.bool)}, off / "model.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith(f"{prefix}.")}, old / "model.pt")
    run = json.loads((old / "run.json").read_text())
    del run["config"]["model"][option]
    (old / "run.json").write_text(json.dumps(run))
    return off, old
