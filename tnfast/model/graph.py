"""The model's view of a bundle's networks and features: built once, reused every step.

:class:`MultiplexGraph` holds the block-diagonal CSR of all L network layers over M = L*N rows
(``tnfast.kernels.stack_multiplex``: layer ``l`` owns rows ``l*N .. (l+1)*N-1``), the per-layer
"gene has an edge here" mask the fusion needs, the standardised features with their presence
flag, and the small per-layer tables the reconstruction sampler needs (edge range and node list
of each layer). Keeping the *same* ``indptr``/``indices`` tensors alive matters: the kernels
cache the derived structures (reverse CSR, row pieces) keyed on those tensor objects, so they
are built on the first step only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.bundle import structural_inputs
from ..kernels import stack_multiplex

__all__ = ["MultiplexGraph", "structural_inputs"]


@dataclass
class MultiplexGraph:
    n_genes: int
    layer_names: tuple[str, ...]
    indptr: torch.Tensor  # (L*N+1,) int64
    indices: torch.Tensor  # (E,) int32, stacked: layer l's sources offset by l*N
    edge_weight: torch.Tensor | None  # (E,) float32 > 0, None when every layer is unweighted
    has_edge: torch.Tensor  # (L, N) bool: gene has at least one edge in the layer
    features: torch.Tensor | None  # (N, F) float32 standardised over present genes, 0 elsewhere
    feature_present: torch.Tensor | None  # (N,) bool
    structural: torch.Tensor | None  # (N, L*dim) float32 fixed per-layer eigenvectors (tnfast.embed)
    # Sampling tables for the reconstruction loss, kept on the CPU (sampling uses a CPU
    # torch.Generator so a seed gives the same samples on every device).
    layer_edge_ptr: torch.Tensor  # (L+1,) int64: layer l's edges are ids [ptr[l], ptr[l+1])
    layer_node_ptr: torch.Tensor  # (L+1,) int64 into layer_nodes
    layer_nodes: torch.Tensor  # (sum of nodes per layer,) int64: genes with an edge, per layer

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n_features(self) -> int:
        return 0 if self.features is None else int(self.features.shape[1])

    @property
    def n_structural(self) -> int:
        return 0 if self.structural is None else int(self.structural.shape[1])

    @property
    def n_edges(self) -> int:
        return int(self.indices.numel())

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    @classmethod
    def from_arrays(cls, layers: dict, n_genes: int, features: np.ndarray | None = None,
                    present: np.ndarray | None = None, use_edge_weights: bool = True,
                    structural_dim: int = 0, seed: int = 0,
                    structural: np.ndarray | None = None) -> "MultiplexGraph":
        """From per-layer CSRs ``{name: (indptr, indices[, weights])}`` (numpy; a
        ``tnfast.data.csr.CSR`` works) over ``n_genes`` genes, and optional features.

        ``structural_dim`` > 0 adds, per layer, its ``structural_dim`` leading eigenvectors
        (:func:`tnfast.embed.layer_embedding`, seeded by ``seed``). They give a shallow GAT the
        module structure for free: what a 1-layer GAT trained for minutes on a CPU cannot learn.
        ``structural``: those inputs computed already (:meth:`Bundle.structural_inputs`, with
        the same layers, weights and arguments, or a run's saved embedding), used as they are.
        """
        if not layers:
            # The encoder still works without networks: every gene uses its input embedding.
            layers = {}
        names = tuple(layers)
        csrs = []
        for name in names:
            c = layers[name]
            ip, ix = np.asarray(c[0], np.int64), np.asarray(c[1])
            if len(ip) != n_genes + 1:
                raise ValueError(f"network layer {name!r} has {len(ip) - 1} nodes, expected {n_genes}")
            w = np.asarray(c[2], np.float32) if (len(c) > 2 and c[2] is not None) else None
            # All-ones weights change nothing (log 1 = 0): skip them to save E floats and work.
            if w is not None and (not use_edge_weights or bool(np.all(w == 1.0))):
                w = None
            csrs.append((ip, ix) if w is None else (ip, ix, w))
        if csrs:
            indptr, indices, weights = stack_multiplex(csrs)
        else:
            indptr, indices, weights = np.zeros(1, np.int64), np.zeros(0, np.int32), None
        n_l = len(names)
        deg = np.diff(indptr).reshape(n_l, n_genes) if n_l else np.zeros((0, n_genes), np.int64)
        has_edge = deg > 0
        layer_edge_ptr = indptr[np.arange(n_l + 1) * n_genes]
        nodes = [np.flatnonzero(h) for h in has_edge]
        node_ptr = np.zeros(n_l + 1, np.int64)
        node_ptr[1:] = np.cumsum([len(x) for x in nodes])
        if not (structural_dim and n_l):
            structural = None
        else:
            if structural is None:
                structural = structural_inputs(csrs, n_genes, structural_dim, seed)
            if structural.shape != (n_genes, n_l * structural_dim) or structural.dtype != np.float32:
                raise ValueError(f"structural inputs of shape {structural.shape} ({structural.dtype}); expected "
                                 f"float32 {(n_genes, n_l * structural_dim)}")
            structural = torch.from_numpy(structural)
        feats = pres = None
        if features is not None:
            f = np.asarray(features, np.float32)
            p = np.ones(n_genes, bool) if present is None else np.asarray(present, bool)
            if f.shape[0] != n_genes or p.shape != (n_genes,):
                raise ValueError(f"features must have one row per gene ({n_genes}), got {f.shape}")
            # Standardise over the genes that have features (unsupervised, no labels involved),
            # so feature scale (real embeddings have std ~0.02) does not depend on the source.
            if p.any():
                mu = f[p].mean(axis=0)
                sd = f[p].std(axis=0)
                sd = np.where(sd > 1e-8, sd, 1.0)
                f = np.where(p[:, None], (f - mu) / sd, 0.0).astype(np.float32)
            else:
                f = np.zeros_like(f)
            feats, pres = torch.from_numpy(f), torch.from_numpy(p)
        return cls(
            n_genes=int(n_genes),
            layer_names=names,
            indptr=torch.from_numpy(np.ascontiguousarray(indptr, np.int64)),
            indices=torch.from_numpy(np.ascontiguousarray(indices, np.int32)),
            edge_weight=None if weights is None else torch.from_numpy(weights),
            has_edge=torch.from_numpy(has_edge),
            features=feats,
            feature_present=pres,
            structural=structural,
            layer_edge_ptr=torch.from_numpy(np.asarray(layer_edge_ptr, np.int64)),
            layer_node_ptr=torch.from_numpy(node_ptr),
            layer_nodes=torch.from_numpy(np.concatenate(nodes).astype(np.int64) if nodes else np.zeros(0, np.int64)),
        )

    @classmethod
    def from_bundle(cls, bundle, use_features: bool = True, use_edge_weights: bool = True,
                    structural_dim: int = 0, seed: int = 0,
                    structural: np.ndarray | None = None) -> "MultiplexGraph":
        """From a :class:`tnfast.data.bundle.Bundle`: its networks (in manifest order) and,
        with ``use_features``, its features (see :meth:`from_arrays`)."""
        f = bundle.features if use_features else None
        if structural is None and structural_dim and bundle.networks:
            structural = bundle.structural_inputs(structural_dim, seed, use_edge_weights)  # computed once per bundle
        return cls.from_arrays(
            dict(bundle.networks), bundle.n_genes,
            None if f is None else f.values, None if f is None else f.present,
            use_edge_weights=use_edge_weights, structural_dim=structural_dim,
            seed=seed, structural=structural,
        )

    @classmethod
    def for_model(cls, bundle, cfg, seed: int = 0, structural: np.ndarray | None = None) -> "MultiplexGraph":
        """The graph a model with config ``cfg`` expects (the same call at training and inference,
        where ``structural`` is the run's saved embedding: see :mod:`tnfast.embed` for why)."""
        return cls.from_bundle(bundle, cfg.use_features, cfg.use_edge_weights, cfg.structural_dim, seed,
                               structural)

    def to(self, device) -> "MultiplexGraph":
        """A copy on ``device`` (the sampling tables stay on the CPU). Call once and keep the
        result: the kernels' per-graph caches are keyed on these tensors."""
        dev = torch.device(device)
        if dev == self.device:
            return self
        mv = lambda t: None if t is None else t.to(dev)  # noqa: E731
        return MultiplexGraph(
            self.n_genes, self.layer_names, mv(self.indptr), mv(self.indices), mv(self.edge_weight),
            mv(self.has_edge), mv(self.features), mv(self.feature_present), mv(self.structural),
            self.layer_edge_ptr, self.layer_node_ptr, self.layer_nodes,
        )
