"""The typical deviation inside the model (the term, its fit and why: :mod:`tnfast.typical`):
buffers fitted on a member's training split, added in :meth:`TranscriptionNet.predict` after the
shrink, before the landmark effects."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..typical import typical_fit
from .own_landmark import fit_by_type

__all__ = ["TypicalDeviation"]


class TypicalDeviation(nn.Module):
    """Buffers ``value`` (T, L): what every gene's prediction of type t gets added, in scaled
    units; ``on`` (T,)."""

    def __init__(self, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("value", torch.zeros(n_types, n_landmarks))
        self.register_buffer("on", torch.zeros(n_types, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, types: torch.Tensor, truth: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> dict[int, dict]:
        """Fit on the training samples: types (n,); truth (n, L) scaled; the scaler's ``mean``
        and ``std`` (T, L), which give the signatures' own units back (the direction and the
        PCC that sizes it live there, as PearsonΔ does). Returns per type index with enough
        samples :func:`typical_fit`'s record."""
        truth = truth.detach().cpu().double().numpy()
        mean, std = (a.detach().cpu().double().numpy() for a in (mean, std))
        t_of = types.cpu().numpy()

        def fit_one(rows: np.ndarray):
            if not rows.any():
                return None, None
            t = int(t_of[rows][0])
            record, dev = typical_fit(truth[rows] * std[t] + mean[t])
            return record, (dev / std[t] if record is not None and record["on"] and dev is not None else None)

        return fit_by_type(types, fit_one, self.value, self.on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, T, L) scaled predictions -> the same plus ``value`` in the types that are ``on``
        (added whatever ``on`` holds: asking would cost a device sync per batch)."""
        return x + (self.value * self.on[:, None]).to(x)[None]
