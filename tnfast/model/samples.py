"""Leakage-free GenSAN inputs, and the measured signatures they draw on.

A sample is (gene g, target type t). GenSAN's input is g's 3 x L matrix: row t is ALWAYS the
first guess (g's own measured t signature is what we predict, so it must never enter the
input), and every other row s is g's measured s signature when it exists and may be used
(``available``: at training only training-split measurements, so no valid/test signature ever
reaches an input), else the first guess for s. :func:`gensan_input` is that rule as a pure
function; :class:`Measurements` gathers the measured rows of a batch of genes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data.bundle import TYPES

__all__ = ["gensan_input", "Measurements", "split_samples"]


def gensan_input(first_guess: torch.Tensor, target: torch.Tensor, measured: torch.Tensor | None,
                 available: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The GenSAN input of a batch of (gene, target type) samples.

    Args:
        first_guess: (n, T, L) FunDNN guesses of the samples' genes, every type.
        target: (n,) int64 target type of each sample (index into TYPES).
        measured: (n, T, L) the genes' measured signatures (any value where not available),
            or None (nothing measured).
        available: (n, T) bool, True where ``measured`` holds a measurement that may be used;
            None means none.

    Returns:
        x (n, T, L): measured where usable and not the target, first guess elsewhere;
        is_measured (n, T) bool: which rows of x are measurements. The target row is always
        a first guess, whatever ``available`` says.
    """
    n, t, _ = first_guess.shape
    not_target = torch.arange(t, device=first_guess.device)[None, :] != target.to(first_guess.device)[:, None]
    if measured is None or available is None:
        return first_guess, torch.zeros(n, t, dtype=torch.bool, device=first_guess.device)
    is_measured = available.to(first_guess.device, torch.bool) & not_target
    x = torch.where(is_measured[..., None], measured.to(first_guess.dtype), first_guess)
    return x, is_measured


class Measurements:
    """The measured signatures of some splits, per type, looked up by gene.

    ``row`` (T, N) int64: row of ``values`` holding gene g's type-t signature, -1 if none;
    ``values`` (n_all + 1, L) float32: every kept signature (already scaled when a scaler was
    given), plus a final zero row that absent entries point to.
    """

    def __init__(self, row: torch.Tensor, values: torch.Tensor):
        self.row, self.values = row, values

    @classmethod
    def from_bundle(cls, bundle, splits: Sequence[str] = ("train",), scaler=None,
                    types: Sequence[str] = TYPES) -> "Measurements":
        """The bundle's signatures of the given ``splits`` (training: ``("train",)`` only), in
        scaled units when ``scaler`` (a fitted :class:`~tnfast.model.scaler.Scaler`) is given.
        Rows are always in TYPES order; ``types`` only selects which are filled."""
        n_lm = len(bundle.landmarks)
        row = np.full((len(TYPES), bundle.n_genes), -1, np.int64)  # rows in TYPES order, always
        vals, offset = [], 0
        for ti, t in enumerate(TYPES):
            s = bundle.signatures.get(t)
            if s is None or t not in types:
                continue
            keep = np.flatnonzero(np.isin(s.split, list(splits)))
            v = torch.from_numpy(np.ascontiguousarray(s.values[keep], np.float32))
            if scaler is not None:
                v = scaler.transform(v, torch.full((len(keep),), ti, dtype=torch.int64))
            row[ti, s.gene[keep]] = offset + np.arange(len(keep))
            vals.append(v)
            offset += len(keep)
        vals.append(torch.zeros(1, n_lm))
        values = torch.cat(vals).float()
        r = torch.from_numpy(row)
        return cls(torch.where(r < 0, torch.full_like(r, offset), r), values)

    @property
    def absent(self) -> int:
        return self.values.shape[0] - 1

    def gather(self, genes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (n, T, L), available (n, T) bool) for a batch of gene indices."""
        g = genes.to(self.row.device).long()
        r = self.row[:, g].t()  # (n, T)
        return self.values[r], r != self.absent

    def to(self, device) -> "Measurements":
        return Measurements(self.row.to(device), self.values.to(device))


def split_samples(bundle, split: str, types: Sequence[str] = TYPES):
    """Every (gene, type) measured in ``split``: (gene (n,) int64, type (n,) int64 index into
    TYPES, values (n, L) float32 in the bundle's units), types in order."""
    genes, tys, vals = [], [], []
    for t in types:
        s = bundle.signatures.get(t)
        if s is None:
            continue
        rows = s.rows(split)
        genes.append(s.gene[rows].astype(np.int64))
        tys.append(np.full(len(rows), TYPES.index(t), np.int64))
        vals.append(s.values[rows].astype(np.float32))
    if not genes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(bundle.landmarks)), np.float32)
    return np.concatenate(genes), np.concatenate(tys), np.concatenate(vals)
