"""The fixed inputs of the linear models: a multiplex network embedding plus the gene features.

The ridge model (`tnfast train --model ridge`) and the ridge and kNN baselines of `tnfast
evaluate` all read genes through this one design matrix, so a baseline and a ridge run built
with the same :class:`DesignConfig` see exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .data.bundle import Bundle
from .embed import multiplex_embedding
from .errors import InputError


@dataclass
class DesignConfig:
    embed_dim: int = 64
    seed: int = 0

    @classmethod
    def from_run(cls, run: dict | None) -> "DesignConfig":
        """The design of a ridge run (its config); any other run: the defaults."""
        cfg = (run or {}).get("config") or {}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


def network_embedding(bundle: Bundle, cfg: DesignConfig) -> np.ndarray | None:
    """(n_genes, layers x embed_dim) :func:`tnfast.embed.multiplex_embedding` of the networks; None without any."""
    return multiplex_embedding(bundle.networks, cfg.embed_dim, cfg.seed) if bundle.networks else None


def design_matrix(bundle: Bundle, cfg: DesignConfig, embedding: np.ndarray | None = None) -> np.ndarray:
    """(n_genes, p) inputs of every gene: network embedding (``embedding``, e.g. a run's saved
    one, else :func:`network_embedding`), then standardised features + presence."""
    parts = []
    if bundle.networks:
        parts.append(network_embedding(bundle, cfg) if embedding is None else embedding)
    f = bundle.features
    if f is not None:
        mu = f.values[f.present].mean(axis=0)
        sd = f.values[f.present].std(axis=0) + 1e-8
        z = np.where(f.present[:, None], (f.values - mu) / sd, 0.0).astype(np.float32)
        parts += [z / np.sqrt(z.shape[1]), f.present[:, None].astype(np.float32)]
    if not parts:
        raise InputError(bundle.meta.get("name", "bundle"), "has neither networks nor features to learn from")
    return np.concatenate(parts, axis=1)
