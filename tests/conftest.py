import os
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


def tnfast(*args, cwd, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the real command line (`python -m tnfast ARGS`) in ``cwd``, as a user would.

    Runs go to ``cwd/runs`` (TNFAST_RUNS), so nothing lands in the checkout. Shared by the test
    modules that drive the CLI: ``from conftest import tnfast``.
    """
    env = {**os.environ, "TNFAST_RUNS": str(Path(cwd) / "runs"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "tnfast", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
