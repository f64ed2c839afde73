"""What every Triton op here shares: the optional import and launch-size helpers.

Triton is optional: without it ``HAS_TRITON`` is false, ``jit`` leaves functions as they are
and ``tl`` is a stand-in, so kernel signatures still evaluate and the reference paths run.
"""

from __future__ import annotations

import math

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
    jit = triton.jit
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    HAS_TRITON = False

    class tl:  # noqa: N801 - minimal stand-in so the kernel signatures below still evaluate
        constexpr = None

    def jit(fn):
        return fn


def next_pow2(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


def interpreted(kernel) -> bool:
    """Whether ``kernel`` runs under TRITON_INTERPRET=1 (the interpreter wraps jit functions)."""
    return HAS_TRITON and type(kernel).__name__ == "InterpretedFunction"
