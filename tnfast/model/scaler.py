"""Per type, per landmark standardisation of the signatures, fit on TRAINING rows only.

The public TranscriptionNet code fit its scalers before the split (valid/test statistics leak
into training) and did not scale prediction-time inputs like training inputs. Here the scaler
is fit from training rows only (:meth:`Scaler.fit_bundle` takes ``split == "train"``), lives
inside the model as buffers (saved with ``state_dict``, loadable with ``weights_only=True``),
and the same object scales inputs and unscales predictions everywhere.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from ..data.bundle import TYPES

__all__ = ["Scaler"]


class Scaler(nn.Module):
    """``z = (x - mean[t]) / std[t]`` per type t and landmark; buffers mean, std (T, L), fitted (T,)."""

    def __init__(self, n_landmarks: int, n_types: int = len(TYPES), per_landmark: bool = True):
        super().__init__()
        self.per_landmark = per_landmark  # False: one pooled std per type (see ModelConfig.scale_per_landmark)
        self.register_buffer("mean", torch.zeros(n_types, n_landmarks))
        self.register_buffer("std", torch.ones(n_types, n_landmarks))
        self.register_buffer("fitted", torch.zeros(n_types, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, values: Mapping) -> "Scaler":
        """``values``: {type (name in TYPES or index): (n, L) training rows}. Types not given, or
        with no rows, keep mean 0 / std 1 and ``fitted`` False. Constant landmarks get std 1."""
        for key, v in values.items():
            ti = TYPES.index(key) if isinstance(key, str) else int(key)
            a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, np.float64)
            if a.ndim != 2 or a.shape[1] != self.mean.shape[1]:
                raise ValueError(f"scaler: {key} values must be (n, {self.mean.shape[1]}), got {a.shape}")
            if len(a) == 0:
                continue
            mu, sd = a.mean(axis=0), a.std(axis=0)
            if not self.per_landmark:
                sd = np.full_like(sd, np.sqrt(np.mean(sd ** 2)))
            sd = np.where(sd > 1e-6, sd, 1.0)
            self.mean[ti] = torch.from_numpy(mu).to(self.mean)
            self.std[ti] = torch.from_numpy(sd).to(self.std)
            self.fitted[ti] = True
        return self

    def fit_bundle(self, bundle, split: str = "train") -> "Scaler":
        """Fit on the bundle's ``split`` rows (the training split) of every type."""
        return self.fit({t: s.values[s.split == split] for t, s in bundle.signatures.items()})

    def _stats(self, x: torch.Tensor, types: torch.Tensor | None):
        if types is None:
            if x.dim() != 3 or x.shape[1] != self.mean.shape[0]:
                raise ValueError(f"scaler: without types x must be (n, {self.mean.shape[0]}, L), got {tuple(x.shape)}")
            return self.mean.to(x), self.std.to(x)
        t = types.to(self.mean.device).long()
        return self.mean[t].to(x), self.std[t].to(x)

    def transform(self, x: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """x (n, T, L) in type order, or x (n, L) with ``types`` (n,) type indices."""
        mu, sd = self._stats(x, types)
        return (x - mu) / sd

    def inverse(self, z: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """Back to the signatures' units (same shapes as :meth:`transform`)."""
        mu, sd = self._stats(z, types)
        return z * sd + mu
