"""FunDNN: one MLP per perturbation type from the gene embedding to a first guess of its signature.

The guesses are in the scaled space of :class:`tnfast.model.scaler.Scaler` (per type and
landmark standardised on the training split), where the training-mean signature is 0: the
heads only have to learn the gene-specific part. LayerNorm after each hidden layer keeps them
insensitive to the embedding's scale, which drifts while the encoder trains. With the ridge
prior on (the default, :mod:`tnfast.model.prior`), the MLPs' last layers start at zero and
learn the residual of the prior's guess.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["FunDNN", "mlp"]


def mlp(d_in: int, hidden: tuple[int, ...], d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Dropout per hidden size, then a Linear to d_out."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class FunDNN(nn.Module):
    """(n, E) embeddings -> (n, T, L) first guesses, one MLP per type (T = 3)."""

    def __init__(self, emb_dim: int, n_landmarks: int, hidden: tuple[int, ...], dropout: float, n_types: int = 3,
                 zero_last: bool = False):
        super().__init__()
        self.mlps = nn.ModuleList(mlp(emb_dim, tuple(hidden), n_landmarks, dropout) for _ in range(n_types))
        if zero_last:  # a residual on top of the ridge prior: start from the prior alone
            for m in self.mlps:
                nn.init.zeros_(m[-1].weight)
                nn.init.zeros_(m[-1].bias)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(emb) for m in self.mlps], dim=1)
