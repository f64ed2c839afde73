"""GenSAN: axial attention over a gene's 3 x L matrix (one row per perturbation type), with TRUE recycling.

State: the (B, 3, L) matrix itself, in scaled units (row t = type t's measurement or first
guess). Each pass adds learned corrections to it through pre-norm residual sublayers:

1. attention across the 3 rows: each L-wide row is one token, projected to ``row_heads`` heads
   of ``row_head_dim`` (<= 128) dims; ``tnfast.kernels.attention`` on (B, H, 3, d);
2. attention across the L columns: each column's 3 values joined to a learned per-landmark
   embedding are one token, projected to ``col_heads`` small heads; ``tnfast.kernels.attention``
   on (B, H, L, d_small) — the 978 x 978 scores are never materialised on GPU;
3. a feed-forward over each row (L -> ff_dim -> L).

The sublayers see the state plus a learned *indicator* embedding per (row type, measured or
first guess), added to the row: it tells the model which rows are trustworthy measurements and
which row is which type. The output projections start at zero, so at initialisation a pass is
the identity and GenSAN starts from the FunDNN guess (stable from the first step, at any R).

Recycling (what the public code got wrong): ONE set of block weights, applied R times, each
pass fed the previous pass's output — ``x = one_pass(x)`` R times; no weight copies, no
``x += x``. The parameter count does not depend on R.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels import attention
from .config import ModelConfig

__all__ = ["AxialBlock", "GenSAN"]


def _zero(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class AxialBlock(nn.Module):
    """Row attention, column attention, feed-forward; pre-norm residuals on the (B, T, L) state."""

    def __init__(self, n_landmarks: int, cfg: ModelConfig, n_types: int = 3):
        super().__init__()
        n_lm = n_landmarks
        self.n_types = n_types
        self.rh, self.rd = cfg.row_heads, cfg.row_head_dim
        self.ch, self.cd = cfg.col_heads, cfg.col_head_dim
        self.row_norm = nn.LayerNorm(n_lm)
        self.row_qkv = nn.Linear(n_lm, 3 * self.rh * self.rd)
        self.row_out = _zero(nn.Linear(self.rh * self.rd, n_lm))
        self.col_norm = nn.LayerNorm(n_lm)
        self.landmark = nn.Parameter(torch.randn(n_lm, cfg.landmark_dim) * 0.02) if cfg.landmark_dim else None
        self.col_qkv = nn.Linear(n_types + cfg.landmark_dim, 3 * self.ch * self.cd)
        self.col_out = _zero(nn.Linear(self.ch * self.cd, n_types))
        self.ff_norm = nn.LayerNorm(n_lm)
        self.ff_in = nn.Linear(n_lm, cfg.ff_dim)
        self.ff_out = _zero(nn.Linear(cfg.ff_dim, n_lm))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, t, n_lm = h.shape
        # 1. across the T rows: (B, H, T, d)
        z = self.row_norm(h + cond)
        q, k, v = self.row_qkv(z).view(b, t, 3, self.rh, self.rd).permute(2, 0, 3, 1, 4)
        a = attention(q, k, v).transpose(1, 2).reshape(b, t, self.rh * self.rd)
        h = h + self.drop(self.row_out(a))
        # 2. across the L columns: token = the column's T values (+ landmark embedding): (B, H, L, d)
        z = self.col_norm(h + cond).transpose(1, 2)  # (B, L, T)
        if self.landmark is not None:
            z = torch.cat([z, self.landmark.to(z.dtype).expand(b, n_lm, -1)], dim=-1)
        q, k, v = self.col_qkv(z).view(b, n_lm, 3, self.ch, self.cd).permute(2, 0, 3, 1, 4)
        a = attention(q, k, v).transpose(1, 2).reshape(b, n_lm, self.ch * self.cd)
        h = h + self.drop(self.col_out(a)).transpose(1, 2)
        # 3. feed-forward over each row
        z = self.ff_norm(h + cond)
        return h + self.drop(self.ff_out(F.gelu(self.ff_in(z))))


class GenSAN(nn.Module):
    """(B, T, L) matrix + (B, T) measured flags -> refined (B, T, L); R passes of shared blocks."""

    def __init__(self, n_landmarks: int, cfg: ModelConfig, n_types: int = 3):
        super().__init__()
        self.n_types = n_types
        self.recycles = cfg.recycles
        # indicator[t, m]: row type t holding a measurement (m = 1) or a first guess (m = 0)
        self.indicator = nn.Parameter(torch.randn(n_types, 2, n_landmarks) * 0.02)
        self.blocks = nn.ModuleList(AxialBlock(n_landmarks, cfg, n_types) for _ in range(cfg.blocks))

    def condition(self, is_measured: torch.Tensor) -> torch.Tensor:
        """(B, T) bool -> (B, T, L) indicator embedding of every row."""
        # A select, not an index: indexing's backward on a CPU accumulates the many repeated
        # (type, flag) pairs with parallel atomic adds, in a different order on every run.
        return torch.where(is_measured[..., None], self.indicator[:, 1], self.indicator[:, 0])

    def one_pass(self, x: torch.Tensor, is_measured: torch.Tensor) -> torch.Tensor:
        """One application of the block stack (the unit that recycling repeats)."""
        cond = self.condition(is_measured).to(x.dtype)
        for block in self.blocks:
            x = block(x, cond)
        return x

    def forward(self, x: torch.Tensor, is_measured: torch.Tensor, recycles: int | None = None) -> torch.Tensor:
        r = self.recycles if recycles is None else int(recycles)
        for _ in range(r):
            x = self.one_pass(x, is_measured)  # the output of a pass is the next pass's input
        return x
