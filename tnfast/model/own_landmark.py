"""The own-landmark effect inside the model (the effect, its fit and why: :mod:`tnfast.own_effect`):
buffers fitted on a member's training split, applied last in :meth:`TranscriptionNet.predict`."""

from __future__ import annotations

import torch
from torch import nn

from ..own_effect import own_effect

__all__ = ["OwnLandmark", "fit_by_type"]


def fit_by_type(types: torch.Tensor, fit_one, value: torch.Tensor, on: torch.Tensor) -> dict[int, dict]:
    """Fit a landmark effect per type t < len(value): ``fit_one(rows)`` (rows: a bool mask over
    ``types``, (n,)) gives (record or None, value or None); ``value[t]`` and ``on[t]`` are set
    (zero and off where it gives no value). Returns the records per type index."""
    value.zero_()
    on.zero_()
    types = types.cpu().numpy()
    out = {}
    for t in range(value.shape[0]):
        record, v = fit_one(types == t)
        if record is not None:
            out[t] = record
        if v is not None:
            value[t] = torch.from_numpy(v).to(value)
            on[t] = True
    return out


class OwnLandmark(nn.Module):
    """Buffers ``landmark`` (N,): each gene's own landmark index or -1; ``value`` (T, L): the
    prediction, in scaled units, at landmark l for a gene whose own landmark is l; ``on`` (T,)."""

    def __init__(self, n_genes: int, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("landmark", torch.full((n_genes,), -1, dtype=torch.long))
        self.register_buffer("value", torch.zeros(n_types, n_landmarks))
        self.register_buffer("on", torch.zeros(n_types, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, landmark: torch.Tensor, genes: torch.Tensor, types: torch.Tensor,
            truth: torch.Tensor) -> dict[int, dict]:
        """Fit on the training samples: ``landmark`` (N,) from :func:`landmark_of_genes`; genes,
        types (n,); truth (n, L) scaled (0 = the training mean). Returns per type index with any
        landmark gene :func:`own_effect`'s record."""
        self.landmark.copy_(landmark)
        own = self.landmark.cpu().numpy()[genes.cpu().numpy()]
        truth = truth.detach().cpu().double().numpy()
        return fit_by_type(types, lambda rows: own_effect(truth[rows], own[rows]), self.value, self.on)

    def forward(self, x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """(n, T, L) scaled predictions of ``genes`` (n,) -> the same with each landmark gene's
        own landmark set to ``value`` in the types that are ``on``."""
        types = torch.nonzero(self.on).flatten()
        if types.numel() == 0:
            return x
        own = self.landmark[genes.to(self.landmark.device).long()].to(x.device)
        rows = torch.nonzero(own >= 0).flatten()
        if rows.numel() == 0:
            return x
        x = x.clone()
        lm = own[rows]
        for t in types.tolist():
            x[rows, t, lm] = self.value[t, lm].to(x)
        return x
