"""Triton kernels with pure-PyTorch references, installed as ``tnfast.kernels``.

CUDA tensors dispatch to Triton; everything else runs the reference in ``reference.py``.
Importing this package never requires Triton.

- :func:`gat_aggregate` — fused multi-head graph-attention message passing over a CSR by
  destination (forward and deterministic backward); :func:`stack_multiplex` builds the
  block-diagonal CSR that runs all network layers in one call.
"""

from .csr import clear_graph_cache, stack_multiplex
from .gat import HAS_TRITON, gat_aggregate
from .attention import attention
from .reference import gat_aggregate_naive, gat_aggregate_reference
from .reference import attention_naive, attention_reference

__all__ = [
    "HAS_TRITON",
    "attention",
    "attention_naive",
    "attention_reference",
    "clear_graph_cache",
    "gat_aggregate",
    "gat_aggregate_naive",
    "gat_aggregate_reference",
    "stack_multiplex",
]
