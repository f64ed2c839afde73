"""The chromosome-arm effect inside the model (the effect, its fit and why: :mod:`tnfast.arm_effect`):
buffers fitted on a member's training split, added in :meth:`TranscriptionNet.predict` after the
shrink."""

from __future__ import annotations

import torch
from torch import nn

from ..arm_effect import CLASSES, arm_effect, pair_classes
from .own_landmark import fit_by_type

__all__ = ["ArmEffect"]


class ArmEffect(nn.Module):
    """Buffers: the genes' (N,) and landmarks' (L,) location codes (chromosome, start, arm;
    :func:`tnfast.arm_effect.location_codes`, -1 unknown); ``shift`` (T, K, L): what a landmark
    of class k gets added, in scaled units, zero for classes that are off; ``on`` (T,)."""

    def __init__(self, n_genes: int, n_landmarks: int, n_types: int):
        super().__init__()
        for name, n in (("chrom", n_genes), ("start", n_genes), ("arm", n_genes),
                        ("lm_chrom", n_landmarks), ("lm_start", n_landmarks), ("lm_arm", n_landmarks)):
            self.register_buffer(name, torch.full((n,), -1, dtype=torch.long))
        self.register_buffer("shift", torch.zeros(n_types, len(CLASSES), n_landmarks))
        self.register_buffer("on", torch.zeros(n_types, dtype=torch.bool))

    def classes(self, genes: torch.Tensor) -> torch.Tensor:
        """(n, L) class of each landmark for ``genes`` (n,), -1 for none."""
        g = genes.to(self.chrom.device).long()
        return pair_classes(self.chrom[g, None], self.start[g, None], self.arm[g, None],
                            self.lm_chrom[None], self.lm_start[None], self.lm_arm[None])

    @torch.no_grad()
    def fit(self, codes: tuple[torch.Tensor, ...], genes: torch.Tensor, types: torch.Tensor,
            truth: torch.Tensor) -> dict[int, dict]:
        """Fit on the training samples: ``codes`` the six arrays of
        :func:`tnfast.arm_effect.location_codes`; genes, types (n,); truth (n, L) scaled (0 = the
        training mean). Returns per type index with any classed landmark :func:`arm_effect`'s
        record."""
        for buf, c in zip((self.chrom, self.start, self.arm, self.lm_chrom, self.lm_start, self.lm_arm), codes):
            buf.copy_(c)
        cls = self.classes(genes).cpu().numpy()
        truth = truth.detach().cpu().double().numpy()
        return fit_by_type(types, lambda rows: arm_effect(truth[rows], cls[rows]), self.shift, self.on)

    def forward(self, x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """(n, T, L) scaled predictions of ``genes`` (n,) -> the same plus, in the types that are
        ``on``, the shift of each landmark's class."""
        if not bool(self.on.any()):
            return x
        cls = self.classes(genes).to(x.device)  # (n, L)
        # one zero class in front for "none", then pick each landmark's entry: (T, n, L)
        table = torch.cat([torch.zeros_like(self.shift[:, :1]), self.shift], dim=1).to(x)
        picked = torch.gather(table, 1, (cls + 1)[None].expand(table.shape[0], -1, -1))
        return x + (picked * self.on[:, None, None].to(x)).transpose(0, 1)
