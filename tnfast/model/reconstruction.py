"""BIONIC-style network reconstruction: each layer's edges against sampled non-edges, from the fused embedding.

BIONIC reconstructs every network's adjacency from the dot products of the fused embeddings.
Scoring all N^2 pairs is out of the question at genome scale, so each step samples, per layer,
``n_edges`` edges uniformly among the layer's edges (so hubs appear in proportion to their
degree, as in the adjacency) and ``n_edges * negatives`` uniform random pairs among the layer's
genes (genes absent from a layer say nothing about its non-edges, as BIONIC masks them). A
random pair is a true edge with probability ~density (< 1% here): accepted noise rather than an
O(E) membership test. Logits are scaled dot products, loss BCE with logits, averaged over all
samples (every layer contributes the same number, so this is also the mean over layers).

Sampling uses a CPU ``torch.Generator`` (same samples for a seed on every device) and costs
O(samples x log M): edge endpoints come from ``indices[e]`` and a binary search in ``indptr``,
never from an O(E) table, so the cost is independent of E beyond the samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .graph import MultiplexGraph

__all__ = ["sample_pairs", "reconstruction_loss"]


def sample_pairs(graph: MultiplexGraph, n_edges: int, negatives: int, generator: torch.Generator):
    """(u, v, label, layer): int64 gene pairs on the graph's device, float labels (1 edge, 0
    sampled non-edge), the layer of each pair. Layers without edges contribute nothing."""
    us, vs, labels, layer_ids = [], [], [], []
    n = graph.n_genes
    ept, npt = graph.layer_edge_ptr.tolist(), graph.layer_node_ptr.tolist()
    dev = graph.device
    for li in range(graph.n_layers):
        e0, e1 = ept[li], ept[li + 1]
        if e1 <= e0:
            continue
        e = torch.randint(e0, e1, (n_edges,), generator=generator).to(dev)
        src = graph.indices.index_select(0, e).long() - li * n
        dst = torch.searchsorted(graph.indptr, e, right=True) - 1 - li * n
        us.append(dst)
        vs.append(src)
        labels.append(torch.ones(n_edges, device=dev))
        if negatives:
            nodes = graph.layer_nodes[npt[li]:npt[li + 1]]
            pick = torch.randint(0, len(nodes), (2, n_edges * negatives), generator=generator)
            neg = nodes[pick].to(dev)
            us.append(neg[0])
            vs.append(neg[1])
            labels.append(torch.zeros(n_edges * negatives, device=dev))
        layer_ids.append(torch.full((n_edges * (1 + negatives),), li, device=dev, dtype=torch.int64))
    if not us:
        z = torch.zeros(0, dtype=torch.int64, device=dev)
        return z, z, torch.zeros(0, device=dev), z
    return torch.cat(us), torch.cat(vs), torch.cat(labels), torch.cat(layer_ids)


def reconstruction_loss(emb: torch.Tensor, graph: MultiplexGraph, generator: torch.Generator,
                        n_edges: int, negatives: int = 1, bias: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Mean BCE-with-logits of sampled edges (label 1) and non-edges (label 0); logit =
    <emb_u, emb_v> / sqrt(E) + bias (the scaling keeps initial logits O(1)). 0 without edges."""
    u, v, label, _ = sample_pairs(graph, n_edges, negatives, generator)
    if u.numel() == 0:
        return emb.sum() * 0.0  # keeps the graph connected for callers that backprop anyway
    logit = (emb.index_select(0, u) * emb.index_select(0, v)).sum(-1).float() * emb.shape[1] ** -0.5
    logit = logit + bias
    return F.binary_cross_entropy_with_logits(logit, label)
