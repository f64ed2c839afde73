"""FunDNN's ridge prior: a closed-form ridge from each gene's fixed inputs to its first guess.

Why: measured genes are few (hundreds per type in real subsets, a few thousand in all of
L1000) and signatures are noisy, so an MLP trained by SGD on them learns the gene-specific part
slowly and overfits it fast; cross-validated on the real example, the small-data MLP scored
below a plain ridge on the same inputs on every type. So FunDNN's first guess is ridge + MLP:
the ridge is fitted once, in closed form, on the training split (scaled units, the penalty by
exact leave-one-out on the training rows, so the valid split stays clean for early stopping),
and the MLP, whose last layer starts at zero, learns only what the ridge misses. At step 0 the
model predicts what the ridge baseline predicts; training has to improve on that.

Inputs (fixed, no training): per network layer its structural block (leading eigenvectors,
:class:`~tnfast.model.graph.MultiplexGraph`), the standardised features and their presence
flag. Each block is scaled to about unit norm per gene (as ``tnfast.design`` does for the ridge
baseline), so one penalty treats the layers and the features alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ..ridge import fit_ridge
from .graph import MultiplexGraph

__all__ = ["RidgePrior", "n_prior_inputs", "prior_inputs"]


def n_prior_inputs(n_structural: int, n_features: int, use_features: bool) -> int:
    return n_structural + (n_features + 1 if use_features and n_features else 0)


def prior_inputs(graph: MultiplexGraph, genes: torch.Tensor, n_layers: int, use_features: bool) -> torch.Tensor:
    """(n, P) float32 fixed inputs of ``genes``: structural blocks / sqrt(block width),
    features / sqrt(F), presence flag."""
    genes = genes.to(graph.device).long()
    parts = []
    if graph.structural is not None:
        parts.append(graph.structural.index_select(0, genes) / math.sqrt(graph.n_structural // n_layers))
    if use_features and graph.features is not None:
        parts.append(graph.features.index_select(0, genes) / math.sqrt(graph.n_features))
        parts.append(graph.feature_present.index_select(0, genes)[:, None].float())
    if not parts:
        return torch.zeros(len(genes), 0, device=graph.device)
    return torch.cat(parts, dim=1)


class RidgePrior(nn.Module):
    """(n, P) fixed inputs -> (n, T, L) ridge predictions in scaled units; 0 for a type not fitted.

    Buffers (saved with the model): weight (T, P, L), x_mean (T, P), y_mean (T, L), alpha (T,),
    fitted (T,) bool.
    """

    def __init__(self, n_inputs: int, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(n_types, n_inputs, n_landmarks))
        self.register_buffer("x_mean", torch.zeros(n_types, n_inputs))
        self.register_buffer("y_mean", torch.zeros(n_types, n_landmarks))
        self.register_buffer("alpha", torch.zeros(n_types))
        self.register_buffer("fitted", torch.zeros(n_types, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, types: torch.Tensor, y: torch.Tensor) -> "RidgePrior":
        """Per type t: ridge on the rows with ``types == t`` of x (n, P) -> y (n, L) (scaled
        training signatures), penalty by leave-one-out. Types with fewer than 3 rows stay unfitted."""
        x = x.detach().cpu().double().numpy()
        y = y.detach().cpu().double().numpy()
        types = types.detach().cpu().numpy()
        for t in range(self.weight.shape[0]):
            rows = np.flatnonzero(types == t)
            if len(rows) < 3:
                continue
            r = fit_ridge(x[rows], y[rows])
            self.weight[t] = torch.from_numpy(r.weight).to(self.weight)
            self.x_mean[t] = torch.from_numpy(r.x_mean).to(self.x_mean)
            self.y_mean[t] = torch.from_numpy(r.y_mean).to(self.y_mean)
            self.alpha[t] = r.alpha
            self.fitted[t] = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x - x_mean[t]) @ W[t] + y_mean[t], with the constant part folded once: (T, L)
        offset = self.y_mean - torch.einsum("tp,tpl->tl", self.x_mean, self.weight)
        return torch.einsum("np,tpl->ntl", x.float(), self.weight) + offset
