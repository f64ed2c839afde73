"""The output subspace: each type's predicted deviations from the training mean projected onto
the leading principal directions of its training signatures, how many chosen on valid.

Why: the gene-specific part of a signature moves the 978 landmarks together (a module's genes
shift the same landmarks), so it lives in a few dozen directions, and a prediction's error in
the other directions is noise that PearsonΔ pays for. On the synthetic default's quick run
(2026-12-01, a script on the trained model) projecting the predictions onto the training
signatures' top 64 directions raised test PearsonΔ by 0.014 / 0.011 / 0.010 (RNAi / CRISPR /
OE), the valid split agreeing (+0.011 / +0.011 / +0.010); in the product, with the rank chosen
on valid: +0.013 / +0.013 / +0.009. On the real example's cross-validation ranks 16-128 moved a
script's PearsonΔ by -0.006 to +0.002; there the margin below keeps it off in most members'
fits, and the product's result moved by 0.000 / +0.002 / 0.000.

Trade-off: a fixed ladder of ranks (``RANKS``) rather than a continuous shrinkage per
direction: one choice per type is what a few dozen valid genes can make, and the basis kept is
(T, L, max rank), 1.5 MB, not a 978 x 978 projector per type.
"""

from __future__ import annotations

import torch
from torch import nn

from ..metrics import row_pearson

__all__ = ["RANKS", "OutputSubspace"]

RANKS = (16, 32, 64, 128)  # candidate ranks, smallest first; 0 = no projection


class OutputSubspace(nn.Module):
    """Buffers ``basis`` (T, L, max rank): per type the training signatures' leading right
    singular vectors in scaled units (columns beyond the number of training rows are 0), and
    ``rank`` (T,): how many of them a type's predictions are projected onto (0: none)."""

    def __init__(self, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("basis", torch.zeros(n_types, n_landmarks, RANKS[-1]))
        self.register_buffer("rank", torch.zeros(n_types, dtype=torch.long))

    def project(self, t: int, x: torch.Tensor, rank: int | None = None) -> torch.Tensor:
        """(n, L) scaled deviations of type ``t`` -> projected onto its ``rank`` directions
        (``rank``: ``self.rank[t]`` when not given)."""
        r = int(self.rank[t]) if rank is None else rank
        if r == 0:
            return x
        v = self.basis[t, :, :r].to(x)
        return (x @ v) @ v.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, T, L) scaled deviations -> each type :meth:`project`-ed."""
        ranks = self.rank.tolist()  # one device sync, not one per type
        if not any(ranks):  # nothing fitted yet (validation during training): no copy
            return x
        return torch.stack([self.project(t, x[:, t], r) for t, r in enumerate(ranks)], dim=1)

    @torch.no_grad()
    def fit(self, t: int, train: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor,
            std: torch.Tensor) -> dict:
        """Fit type ``t``: the basis from ``train`` (n, L), its training signatures (scaled, so
        centred on the training mean), then the rank from the valid genes' ``pred`` and ``truth``
        (g, L, scaled); ``std`` (L,): the scaler's. The rank of highest mean valid PearsonΔ is
        taken only if it beats no projection by more than one standard error of the per-gene
        gains: among four ranks the best is otherwise picked by chance on a few dozen genes.
        Returns ``rank`` (0: none) and, where the ranks were compared, ``best_rank`` (the
        ladder's best) and ``valid_gain`` (its mean valid PearsonΔ gain over no projection)."""
        self.rank[t] = 0
        self.basis[t].zero_()
        if len(train) < 2 or len(pred) < 2:
            return {"rank": 0}
        vt = torch.linalg.svd(train.double(), full_matrices=False).Vh
        k = min(RANKS[-1], vt.shape[0])
        self.basis[t, :, :k] = vt[:k].T.to(self.basis)
        sd = std.double().cpu().numpy()  # back to the signatures' units, where PearsonΔ is taken
        q, basis = pred.double().cpu().numpy(), self.basis[t].double().cpu().numpy()
        y = truth.double().cpu().numpy() * sd
        base = row_pearson(q * sd, y)  # PearsonΔ: scaled units are deviations from the training mean
        best, best_gain = 0, None
        for r in RANKS:
            gain = row_pearson((q @ basis[:, :r]) @ basis[:, :r].T * sd, y) - base
            if best_gain is None or gain.mean() > best_gain.mean():
                best, best_gain = r, gain
        if best_gain.mean() > best_gain.std() / len(best_gain) ** 0.5:
            self.rank[t] = best
        return {"rank": int(self.rank[t]), "valid_gain": round(float(best_gain.mean()), 4), "best_rank": best}
