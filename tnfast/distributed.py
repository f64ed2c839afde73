"""torchrun integration: which share of the work this process owns.

Processes started by ``torchrun`` see WORLD_SIZE/RANK in their environment; tnfast then joins
the process group (gloo on CPU, nccl on CUDA) and splits work by rank. A plain process is
rank 0 of 1 and never touches torch.distributed.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size), joining the torchrun process group on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def my_range(n: int, rank: int, size: int) -> range:
    """The contiguous block of ``range(n)`` that ``rank`` owns; blocks are disjoint and cover it."""
    lo = n * rank // size
    return range(lo, n * (rank + 1) // size)


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (itself when not distributed)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
