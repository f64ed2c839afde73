"""The multiplex network encoder: one GAT encoder per network layer, fused per gene into one embedding.

BIONIC-style: every network layer has its own weights (pre-GAT projection, GAT layers,
attention vectors), but all L layers run in ONE ``tnfast.kernels.gat_aggregate`` call per GAT
depth over the stacked block-diagonal CSR, with the per-layer linear maps batched (``torch.bmm``
over (L, N, C)). So the GPU runs one fused kernel per depth, not L, and nothing of size E x C
is ever materialised (the kernels stream edges).

Node input: a learned vector per gene and/or the bundle's standardised features with a presence
flag (zeros + flag 0 for genes without features). The same input feeds every layer's encoder.
The learned vector of a gene with no edge in any layer is zeroed: no reconstruction gradient
would ever train it. Optionally (``structural_dim``) a fixed spectral embedding per layer
joins them (see :class:`~tnfast.model.graph.MultiplexGraph`).

Fusion: per gene, attention over its L layer embeddings plus its own input embedding
("self slot"), masked where the gene has no edge in a layer (there its GAT output is only a
function of the input: it carries no network information, and without a mask BIONIC-style
fusion would average it in). The self slot is never masked, so a gene with no edge anywhere
(e.g. one with features only) falls back to its projected input and still gets a distinct
embedding, and genes with few edges can lean on their features.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels import gat_aggregate
from .config import ModelConfig
from .graph import MultiplexGraph

__all__ = ["MultiplexEncoder", "masked_fusion"]


def masked_fusion(candidates: torch.Tensor, mask: torch.Tensor, proj: nn.Linear, query: torch.Tensor) -> torch.Tensor:
    """Per-row attention pooling over K candidates: (K, N, C), mask (K, N) bool -> (N, C).

    score[k, n] = query . tanh(proj(candidates[k, n])), softmax over k among the unmasked
    candidates of row n. Masked candidates are zeroed before the weighted sum, so whatever they
    hold (even inf/NaN) cannot reach the output or its gradient. Every row needs at least one
    unmasked candidate (the encoder's self slot guarantees it).
    """
    cand = torch.where(mask[..., None], candidates, torch.zeros((), dtype=candidates.dtype, device=candidates.device))
    score = torch.tanh(proj(cand)) @ query.to(cand.dtype)  # (K, N)
    score = score.masked_fill(~mask, float("-inf"))
    alpha = torch.softmax(score.float(), dim=0).to(cand.dtype)
    return torch.einsum("kn,knc->nc", alpha, cand)


class MultiplexEncoder(nn.Module):
    """Gene input -> per-layer GAT stacks (one kernel call per depth) -> masked fusion -> (N, E)."""

    def __init__(self, cfg: ModelConfig, n_genes: int, n_layers: int, n_features: int, n_structural: int = 0):
        super().__init__()
        self.cfg = cfg
        self.n_genes, self.n_layers, self.n_features = int(n_genes), int(n_layers), int(n_features)
        self.use_features = bool(cfg.use_features and n_features > 0)
        self.n_structural = int(n_structural)
        if self.n_structural and (not n_layers or self.n_structural % n_layers):
            raise ValueError(f"{n_structural} structural inputs do not split into {n_layers} layers")
        self.d_shared = cfg.gene_embedding_dim + (n_features + 1 if self.use_features else 0)
        d_in = self.d_shared + self.n_structural
        if d_in == 0:
            raise ValueError("the encoder needs a node input: gene_embedding_dim > 0, structural"
                             " inputs or a bundle with features")
        self.d_in = d_in
        h, d, c, nl, k = cfg.gat_heads, cfg.gat_head_dim, cfg.gat_width, self.n_layers, cfg.gat_layers
        self.gene_embedding = nn.Embedding(n_genes, cfg.gene_embedding_dim) if cfg.gene_embedding_dim else None
        # Per network layer (BIONIC: one encoder per network), stacked so one bmm serves all L.
        # layer l's encoder sees the shared input and ITS OWN structural block (the self slot of
        # the fusion sees all blocks): half the cost of feeding every block to every layer
        self.pre_weight = nn.Parameter(torch.empty(nl, self.d_shared, c))
        self.struct_weight = (nn.Parameter(torch.empty(nl, self.n_structural // nl, c))
                              if self.n_structural else None)
        self.pre_bias = nn.Parameter(torch.zeros(nl, c))
        self.gat_weight = nn.Parameter(torch.empty(k, nl, c, c))
        self.att_src = nn.Parameter(torch.empty(k, nl, h, d))
        self.att_dst = nn.Parameter(torch.empty(k, nl, h, d))
        self.gat_bias = nn.Parameter(torch.zeros(k, nl, c))
        self.self_proj = nn.Linear(d_in, c)  # the self slot: the gene's input in the fusion space
        self.norm = nn.LayerNorm(c)  # same scale for every candidate before fusion
        self.fusion_proj = nn.Linear(c, cfg.fusion_dim)
        self.fusion_query = nn.Parameter(torch.empty(cfg.fusion_dim))
        self.out = nn.Linear(c, cfg.embedding_dim)
        self.recon_bias = nn.Parameter(torch.zeros(()))  # logit offset of the reconstruction loss
        self.dropout = nn.Dropout(cfg.encoder_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Glorot for the per-layer maps and attention vectors, as GAT does (fan over one slice).
        def glorot(t: torch.Tensor, fan_in: int, fan_out: int) -> None:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(t, -bound, bound)

        c, d = self.cfg.gat_width, self.cfg.gat_head_dim
        with torch.no_grad():
            s = self.n_structural // max(self.n_layers, 1)
            glorot(self.pre_weight, self.d_shared + s, c)
            if self.struct_weight is not None:
                glorot(self.struct_weight, self.d_shared + s, c)
            glorot(self.gat_weight, c, c)
            glorot(self.att_src, d, 1)
            glorot(self.att_dst, d, 1)
            nn.init.normal_(self.fusion_query, std=self.cfg.fusion_dim ** -0.5)

    # ---------------------------------------------------------------------------------------
    def _check(self, graph: MultiplexGraph) -> None:
        if graph.n_genes != self.n_genes or graph.n_layers != self.n_layers:
            raise ValueError(
                f"graph has {graph.n_genes} genes x {graph.n_layers} layers; the model was built for"
                f" {self.n_genes} x {self.n_layers}"
            )
        if self.use_features and graph.n_features != self.n_features:
            raise ValueError(f"graph has {graph.n_features} features; the model was built for {self.n_features}")
        if graph.n_structural != self.n_structural:
            raise ValueError(f"graph has {graph.n_structural} structural inputs; the model was built for"
                             f" {self.n_structural} (build it with MultiplexGraph.for_model)")

    def input_embedding(self, graph: MultiplexGraph) -> torch.Tensor:
        """(N, d_in): [learned gene vector (0 for genes without edges) | standardised features |
        presence flag | fixed structural inputs]."""
        parts = []
        if self.gene_embedding is not None:
            # A gene with no edge anywhere never gets a reconstruction gradient: its learned
            # vector would stay random noise (or, if measured, memorise its training signature).
            # Zero it, so such a gene is described by its features alone, or, without features,
            # by the same "uninformed" input as every other such gene.
            linked = graph.has_edge.any(dim=0) if self.n_layers else torch.zeros(
                self.n_genes, dtype=torch.bool, device=self.gene_embedding.weight.device)
            parts.append(self.gene_embedding.weight * linked[:, None].to(self.gene_embedding.weight.dtype))
        if self.use_features:
            p = graph.feature_present.to(self.pre_weight.dtype)[:, None]
            parts += [graph.features.to(self.pre_weight.dtype), p]
        if self.n_structural:
            parts.append(graph.structural.to(self.pre_weight.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def layer_embeddings(self, graph: MultiplexGraph, x0: torch.Tensor | None = None) -> torch.Tensor:
        """(L, N, C) the output of every layer's GAT stack (before the fusion's LayerNorm).

        Depth k, all layers at once: h = x W_k (bmm), attention terms a = <h_head, att>, one
        ``gat_aggregate`` over the stacked CSR, then x <- x + ELU(aggregate + bias) (residual:
        the kernel has no self-loops, so the residual carries the gene's own state).
        """
        self._check(graph)
        if x0 is None:
            x0 = self.input_embedding(graph)
        cfg = self.cfg
        nl, n, h, d, c = self.n_layers, self.n_genes, cfg.gat_heads, cfg.gat_head_dim, cfg.gat_width
        x = self.layer_inputs(x0)
        for k in range(cfg.gat_layers):
            hk = torch.bmm(self.dropout(x), self.gat_weight[k].to(x.dtype))  # (L, N, C)
            # attention terms <h_head, att_head> of every node, source and destination at once, as
            # one small bmm with a block-diagonal (C, 2H) matrix: no (L, N, H, D) product tensor
            a = torch.bmm(hk, self._attention_matrix(k).to(hk.dtype))  # (L, N, 2H)
            agg = gat_aggregate(
                hk.view(nl * n, h, d), a[..., :h].reshape(nl * n, h), a[..., h:].reshape(nl * n, h),
                graph.indptr, graph.indices, graph.edge_weight, cfg.gat_negative_slope,
            )
            x = x + F.elu(agg.view(nl, n, c) + self.gat_bias[k][:, None, :].to(agg.dtype))
        return x

    def layer_inputs(self, x0: torch.Tensor) -> torch.Tensor:
        """(N, d_in) -> (L, N, C): per layer, W_l [shared input] + S_l [layer l's structural block] + b_l."""
        nl, n = self.n_layers, self.n_genes
        # (N, d_shared) x (L, d_shared, C) -> (L, N, C), batched over the layers
        x = torch.matmul(x0[:, :self.d_shared], self.pre_weight) + self.pre_bias[:, None, :]
        if self.n_structural:
            blocks = x0[:, self.d_shared:].reshape(n, nl, -1).transpose(0, 1)  # (L, N, s)
            x = x + torch.bmm(blocks, self.struct_weight.to(blocks.dtype))
        return x

    def _attention_matrix(self, k: int) -> torch.Tensor:
        """(L, C, 2H): column h holds att_src[k, l, h] in rows h*D..(h+1)*D-1, column H+h att_dst."""
        h = self.cfg.gat_heads
        eye = torch.eye(h, dtype=self.att_src.dtype, device=self.att_src.device)
        src = torch.einsum("lhd,hg->lhdg", self.att_src[k], eye)
        dst = torch.einsum("lhd,hg->lhdg", self.att_dst[k], eye)
        return torch.cat([src, dst], dim=-1).reshape(self.n_layers, self.cfg.gat_width, 2 * h)

    def fuse(self, layers: torch.Tensor, x0: torch.Tensor, has_edge: torch.Tensor) -> torch.Tensor:
        """(L, N, C) layer outputs + (N, d_in) inputs -> (N, C) fused, masked by has_edge (L, N)."""
        self_slot = self.self_proj(x0)
        # zero the masked slots before the LayerNorm too, so nothing of them reaches any gradient
        layers = torch.where(has_edge[..., None], layers, torch.zeros((), dtype=layers.dtype, device=layers.device))
        cand = self.norm(torch.cat([layers, self_slot[None].to(layers.dtype)], dim=0))
        self_mask = torch.ones(1, has_edge.shape[1], dtype=torch.bool, device=has_edge.device)
        mask = torch.cat([has_edge, self_mask], dim=0)
        return masked_fusion(cand, mask, self.fusion_proj, self.fusion_query)

    def forward(self, graph: MultiplexGraph) -> torch.Tensor:
        """(N, embedding_dim): one embedding per gene of the graph."""
        self._check(graph)
        x0 = self.input_embedding(graph)
        if self.n_layers:
            layers = self.layer_embeddings(graph, x0)
        else:  # no networks: the fusion only sees the self slot
            layers = x0.new_zeros(0, self.n_genes, self.cfg.gat_width)
        return self.out(self.fuse(layers, x0, graph.has_edge))
