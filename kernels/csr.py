"""CSR helpers shared by the graph kernels: the stacked multiplex CSR and cached per-graph plans.

Conventions (the same as ``tnfast.data.csr``): a CSR *by destination* — row ``i`` lists the
sources ``j`` of the edges ``j -> i`` in ``indices[indptr[i]:indptr[i+1]]``; edge ids are
positions in ``indices`` ("dst-major" order).

Everything a kernel needs that depends only on the graph (validated int32/int64 copies, the row
id of every edge, the reverse source-major CSR with its edge permutation, the split of long rows
into pieces) is built once per graph by :func:`graph_plan` and cached. The cache is keyed on the
caller's own ``indptr``/``indices`` tensors (object identity, checked through weak references so
an address reused by a new tensor can never hit a stale entry, plus ``_version`` so in-place torch
edits invalidate it; edits made behind torch's back, e.g. to the numpy array under a
``torch.from_numpy`` tensor, are not seen: call :func:`clear_graph_cache` after those), and holds
at most ``_CACHE_SIZE`` graphs (least recently used evicted). Building a plan validates the graph
(indptr from 0 to E and non-decreasing, indices in range) once, with a device sync.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

__all__ = ["stack_multiplex", "graph_plan", "GraphPlan", "SegmentPlan", "ReverseCSR"]

_INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Multiplex stacking
# --------------------------------------------------------------------------------------------
def stack_multiplex(csrs: Sequence[Sequence[Any]]):
    """Stack L per-layer CSRs over the same N nodes into one block-diagonal CSR over M = L*N rows.

    ``csrs``: a sequence of layers, each ``(indptr, indices)`` or ``(indptr, indices, weights)``
    (a :class:`tnfast.data.csr.CSR` works as is), all over the same N nodes (``len(indptr) ==
    N + 1``). Layer ``l`` owns rows (and columns) ``l*N .. (l+1)*N - 1``: its rows are appended
    in order and its source indices are offset by ``l*N``, so one :func:`gat_aggregate` call
    runs every layer at once on features of shape ``(L*N, H, D)`` (layer-major: row ``l*N + g``
    is gene ``g`` in layer ``l``).

    Returns ``(indptr, indices, weights)``: ``indptr`` (L*N+1,) int64, ``indices`` (E,) int32
    (sorted within each row if the inputs were), ``weights`` (E,) float32 — or ``None`` when no
    layer has weights (a layer without weights among weighted ones gets weight 1). The arrays
    are numpy when every input array is numpy, else torch tensors on the device of the first
    tensor given.
    """
    layers = list(csrs)
    if not layers:
        raise ValueError("stack_multiplex: need at least one layer")
    use_torch = False
    device = None
    parts = []
    for li, layer in enumerate(layers):
        if len(layer) not in (2, 3):
            raise ValueError(
                f"stack_multiplex: layer {li} must be (indptr, indices) or (indptr, indices, weights),"
                f" got {len(layer)} items"
            )
        arrs = list(layer) + [None] * (3 - len(layer))
        for a in arrs:
            if isinstance(a, torch.Tensor):
                use_torch = True
                device = a.device if device is None else device
        parts.append([None if a is None else _to_numpy(a) for a in arrs])

    n = len(parts[0][0]) - 1
    if n < 0:
        raise ValueError("stack_multiplex: layer 0 has an empty indptr (need N+1 entries)")
    total_rows = len(parts) * n
    if total_rows > _INT32_MAX:
        raise ValueError(f"stack_multiplex: L*N = {total_rows} does not fit int32 indices")
    any_w = any(p[2] is not None for p in parts)
    indptrs, indices, weights = [np.zeros(1, np.int64)], [], []
    offset_e = 0
    for li, (ip, ix, w) in enumerate(parts):
        if ip.ndim != 1 or ix.ndim != 1:
            raise ValueError(f"stack_multiplex: layer {li}: indptr and indices must be 1-D")
        if len(ip) - 1 != n:
            raise ValueError(
                f"stack_multiplex: layer {li} has {len(ip) - 1} nodes, layer 0 has {n};"
                " all layers must share the same node set"
            )
        if not (np.issubdtype(ip.dtype, np.integer) and np.issubdtype(ix.dtype, np.integer)):
            raise ValueError(f"stack_multiplex: layer {li}: indptr/indices must be integer arrays")
        ip = ip.astype(np.int64, copy=False)
        nnz = len(ix)
        if ip[0] != 0 or ip[-1] != nnz or np.any(np.diff(ip) < 0):
            raise ValueError(
                f"stack_multiplex: layer {li}: indptr must start at 0, be non-decreasing and end at"
                f" len(indices) = {nnz}"
            )
        if nnz and (ix.min() < 0 or ix.max() >= n):
            raise ValueError(f"stack_multiplex: layer {li}: indices must lie in [0, {n})")
        if w is not None and len(w) != nnz:
            raise ValueError(f"stack_multiplex: layer {li}: weights has {len(w)} entries, expected {nnz}")
        indptrs.append(ip[1:] + offset_e)
        indices.append(ix.astype(np.int64) + li * n)
        if any_w:
            weights.append(np.ones(nnz, np.float32) if w is None else np.asarray(w, np.float32))
        offset_e += nnz
    out_ip = np.concatenate(indptrs)
    out_ix = np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32)
    out_w = (np.concatenate(weights) if weights else np.zeros(0, np.float32)) if any_w else None
    if use_torch:
        conv = lambda a: None if a is None else torch.from_numpy(a).to(device)  # noqa: E731
        return conv(out_ip), conv(out_ix), conv(out_w)
    return out_ip, out_ix, out_w


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# --------------------------------------------------------------------------------------------
# Per-graph plans
# --------------------------------------------------------------------------------------------
class ReverseCSR(NamedTuple):
    """The source-major view of a dst-major CSR.

    Position ``q`` of the reverse CSR is the edge ``perm[q]`` of the forward CSR; row ``j`` of
    ``indptr`` lists the destinations ``indices[q]`` of the edges leaving ``j``, in increasing
    edge id (the sort is stable), so the order is deterministic.
    """

    indptr: torch.Tensor  # (M+1,) int64
    indices: torch.Tensor  # (E,) int32 (int64 when E > 2^31-1): destination of each edge
    perm: torch.Tensor  # (E,) int32/int64: forward edge id of each reverse position


class SegmentPlan(NamedTuple):
    """Rows cut into pieces of at most ``threshold`` edges (rows with fewer edges, empty rows
    included, are one piece each). Pieces are sorted by row, then by position.

    ``slot[s] = -1`` when piece ``s`` is a whole row (the kernel writes the final result), else
    the index of its partial-result slot; the ``num_hubs`` split rows ``hub_rows`` own the slots
    ``hub_ptr[k] .. hub_ptr[k+1]-1`` in order, merged by a second, deterministic pass.
    """

    row: torch.Tensor  # (S,) int32
    start: torch.Tensor  # (S,) int64
    end: torch.Tensor  # (S,) int64
    slot: torch.Tensor  # (S,) int32
    hub_rows: torch.Tensor  # (num_hubs,) int32
    hub_ptr: torch.Tensor  # (num_hubs+1,) int64
    num_segments: int
    num_slots: int
    num_hubs: int
    threshold: int


def _segment_plan(indptr: torch.Tensor, threshold: int) -> SegmentPlan:
    dev = indptr.device
    m = indptr.numel() - 1
    deg = indptr[1:] - indptr[:-1]
    npieces = torch.clamp((deg + threshold - 1) // threshold, min=1)
    s = int(npieces.sum().item()) if m else 0
    rows = torch.arange(m, device=dev, dtype=torch.int64)
    seg_row = torch.repeat_interleave(rows, npieces, output_size=s)
    first = torch.cumsum(npieces, 0) - npieces
    k = torch.arange(s, device=dev, dtype=torch.int64) - first[seg_row]
    start = indptr[seg_row] + k * threshold
    end = torch.minimum(start + threshold, indptr[seg_row + 1])
    split = npieces[seg_row] > 1
    slot = torch.where(split, torch.cumsum(split.to(torch.int64), 0) - 1, torch.full_like(seg_row, -1))
    hubs = torch.nonzero(npieces > 1).flatten()
    hub_ptr = torch.zeros(hubs.numel() + 1, dtype=torch.int64, device=dev)
    torch.cumsum(npieces[hubs], 0, out=hub_ptr[1:])
    num_slots = int(hub_ptr[-1].item())
    return SegmentPlan(
        seg_row.to(torch.int32), start, end, slot.to(torch.int32), hubs.to(torch.int32), hub_ptr,
        s, num_slots, hubs.numel(), threshold,
    )


class GraphPlan:
    """Everything derived from one (indptr, indices) pair, built lazily and kept.

    Attributes: ``m`` rows, ``e`` edges, ``indptr`` (M+1,) int64, ``indices`` (E,) int32
    contiguous (int64 only beyond 2^31-1 edges), ``crow`` the row pointer in the dtype of
    ``indices`` (torch sparse CSR needs them to match), and lazily ``dst`` (E,) the row of every
    edge, ``reverse`` the :class:`ReverseCSR`, ``segments(t)`` / ``reverse_segments(t)``.
    """

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor):
        self.m = indptr.numel() - 1
        self.e = indices.numel()
        self.device = indptr.device
        idx_dtype = torch.int32 if max(self.e, self.m) <= _INT32_MAX else torch.int64
        self.indptr = indptr.to(torch.int64).contiguous()
        self.indices = indices.to(idx_dtype).contiguous()
        self.crow = self.indptr.to(idx_dtype)
        self._validate()
        self._dst: torch.Tensor | None = None
        self._reverse: ReverseCSR | None = None
        self._rev_crow: torch.Tensor | None = None
        self._segments: dict[tuple[str, int], SegmentPlan] = {}
        self._weights_checked: tuple[Any, int] | None = None  # (weakref to the tensor, its version)

    def check_weights(self, w: torch.Tensor) -> None:
        """Refuse edge weights that are not finite and > 0 (their log would put NaN rows in the
        output). Checked once per weight tensor, and again after an in-place change, as the graph
        is: on a GPU the check is a sync, which a training step should not pay every call."""
        seen = self._weights_checked
        if seen is not None and seen[0]() is w and seen[1] == w._version:
            return
        if w.numel() and not bool(((w > 0) & torch.isfinite(w)).all()):
            raise ValueError("edge_weight must be finite and > 0 (it enters the score as log w)")
        self._weights_checked = (weakref.ref(w), w._version)

    def _validate(self) -> None:
        ip = self.indptr
        if int(ip[0].item()) != 0 or int(ip[-1].item()) != self.e:
            raise ValueError(
                f"indptr must start at 0 and end at len(indices) = {self.e};"
                f" got {int(ip[0].item())} .. {int(ip[-1].item())}"
            )
        if self.m and bool((ip[1:] < ip[:-1]).any().item()):
            raise ValueError("indptr must be non-decreasing")
        if self.e:
            lo, hi = int(self.indices.min().item()), int(self.indices.max().item())
            if lo < 0 or hi >= self.m:
                raise ValueError(f"indices must lie in [0, M={self.m}); got values in [{lo}, {hi}]")

    @property
    def dst(self) -> torch.Tensor:
        """(E,) destination row of every edge, in the dtype of ``indices``."""
        if self._dst is None:
            rows = torch.arange(self.m, device=self.device, dtype=self.indices.dtype)
            self._dst = torch.repeat_interleave(rows, self.indptr.diff(), output_size=self.e)
        return self._dst

    @property
    def reverse(self) -> ReverseCSR:
        if self._reverse is None:
            perm = torch.sort(self.indices, stable=True).indices
            counts = torch.bincount(self.indices.to(torch.int64), minlength=self.m)
            rev_indptr = torch.zeros(self.m + 1, dtype=torch.int64, device=self.device)
            torch.cumsum(counts, 0, out=rev_indptr[1:])
            self._reverse = ReverseCSR(rev_indptr, self.dst[perm], perm.to(self.indices.dtype))
        return self._reverse

    @property
    def rev_crow(self) -> torch.Tensor:
        if self._rev_crow is None:
            self._rev_crow = self.reverse.indptr.to(self.indices.dtype)
        return self._rev_crow

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """The (M, M) sparse CSR matrix of this graph with the given per-edge values."""
        return _sparse_csr(self.crow, self.indices, values, self.m)

    def reverse_csr(self, values_src_major: torch.Tensor) -> torch.Tensor:
        """The transposed (M, M) CSR matrix; values are in reverse (source-major) order."""
        return _sparse_csr(self.rev_crow, self.reverse.indices, values_src_major, self.m)

    def segments(self, threshold: int) -> SegmentPlan:
        key = ("fwd", int(threshold))
        if key not in self._segments:
            self._segments[key] = _segment_plan(self.indptr, int(threshold))
        return self._segments[key]

    def reverse_segments(self, threshold: int) -> SegmentPlan:
        key = ("rev", int(threshold))
        if key not in self._segments:
            self._segments[key] = _segment_plan(self.reverse.indptr, int(threshold))
        return self._segments[key]


def _sparse_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, m: int) -> torch.Tensor:
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta state": the ops used here are stable enough.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, (m, m), check_invariants=False)


_CACHE_SIZE = 16
_cache: "OrderedDict[tuple[int, int], tuple[Any, Any, int, int, GraphPlan]]" = OrderedDict()
_cache_lock = threading.Lock()


def graph_plan(indptr: torch.Tensor, indices: torch.Tensor) -> GraphPlan:
    """The cached :class:`GraphPlan` of this graph (built and validated on first use)."""
    key = (id(indptr), id(indices))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            r_ip, r_ix, v_ip, v_ix, plan = hit
            if r_ip() is indptr and r_ix() is indices and v_ip == indptr._version and v_ix == indices._version:
                _cache.move_to_end(key)
                return plan
            del _cache[key]
    plan = GraphPlan(indptr, indices)
    with _cache_lock:
        _cache[key] = (weakref.ref(indptr), weakref.ref(indices), indptr._version, indices._version, plan)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return plan


def clear_graph_cache() -> None:
    """Drop every cached graph plan (frees their device memory)."""
    with _cache_lock:
        _cache.clear()
