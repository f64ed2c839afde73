"""Residual smoothing: the model's errors on the training genes, spread over the networks.

Why: the encoder reads the networks and the GenSAN a gene's own other-type signatures, but
nothing reads the signatures measured on a gene's *neighbours*. Errors are shared along the
networks (a gene's response follows its neighbourhood), so the training genes' residuals,
diffused over the multiplex, correct the genes near them: the "correct" step of Correct and
Smooth (Huang et al., ICLR 2021). It is fitted once, after training, in closed form.

Trade-off: the residuals are (n_train, 978); they are projected onto their top ``rank``
principal directions first, so the diffusion moves (N, T*rank) floats over the ~15 M edges
rather than (N, T*978), and what the model keeps is ``coef`` (T, N, rank) and ``basis``
(T, rank, L): about 20 MB at genome scale at rank 64, and no graph work at prediction time.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..kernels.csr import graph_plan
from .graph import MultiplexGraph

ALPHA = 0.8  # diffusion: z <- (1 - ALPHA) x0 + ALPHA S z (personalised PageRank)
HOPS = 15  # ALPHA**15 = 0.035: farther hops add little


def diffuse(graph: MultiplexGraph, x0: torch.Tensor, alpha: float = ALPHA, hops: int = HOPS) -> torch.Tensor:
    """(N, k) -> (N, k): ``hops`` steps of z <- (1 - alpha) x0 + alpha S z from z = x0, where
    S = mean over the L layers of D^-1/2 A D^-1/2 (A a layer's weighted adjacency, D its
    weighted degrees; a gene without edges in a layer gets 0 from it)."""
    n, n_layers = graph.n_genes, graph.n_layers
    x0 = x0.float()
    if n_layers == 0 or graph.n_edges == 0:  # S = 0
        return x0 if hops == 0 else (1 - alpha) * x0
    plan = graph_plan(graph.indptr, graph.indices)  # the kernels' cached plan: its edge rows, its CSR
    dev = plan.device
    w = graph.edge_weight.float() if graph.edge_weight is not None else torch.ones(plan.e, device=dev)
    deg = torch.zeros(plan.m, device=dev).index_add_(0, plan.dst, w)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg))
    with warnings.catch_warnings():  # torch's note that sparse CSR is "in beta", not for users' eyes
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        s = torch.sparse_csr_tensor(plan.crow, plan.indices, inv[plan.dst] * w * inv[plan.indices],
                                    (plan.m, plan.m), check_invariants=False)  # validated by the plan
    z = x0
    for _ in range(hops):
        sz = (s @ z.repeat(n_layers, 1)).view(n_layers, n, -1).mean(0)
        z = (1 - alpha) * x0 + alpha * sz
    return z


class ResidualCorrection(nn.Module):
    """(n,) gene indices -> (n, T, L) correction in scaled units, 0 until :meth:`fit`.

    Buffers (saved with the model): coef (T, N, rank) and basis (T, rank, L), each type's
    diffused training residuals in its own principal directions, and mix (T, T): the
    correction of type t is sum over o of mix[t, o] x type o's diffused residual.
    """

    def __init__(self, n_genes: int, rank: int, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("coef", torch.zeros(n_types, n_genes, rank))
        self.register_buffer("basis", torch.zeros(n_types, rank, n_landmarks))
        self.register_buffer("mix", torch.zeros(n_types, n_types))

    def diffused(self, genes: torch.Tensor) -> torch.Tensor:
        """(n,) -> (n, T, L): each type's diffused training residual at the genes, unscaled."""
        return torch.einsum("onk,okl->nol", self.coef.index_select(1, genes.to(self.coef.device)), self.basis)

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        return torch.einsum("to,nol->ntl", self.mix, self.diffused(genes))

    @torch.no_grad()
    def clear(self) -> None:
        self.coef.zero_()
        self.basis.zero_()
        self.mix.zero_()

    @torch.no_grad()
    def fit(self, graph: MultiplexGraph, residuals: dict[int, tuple[torch.Tensor, torch.Tensor]],
            valid: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Per type t: ``residuals[t]`` = (training gene indices (m,), their residuals (m, L)),
        ``valid[t]`` = (valid gene indices (g,), their residuals (g, L)), scaled units, of the
        model without this correction. Each type's training residuals are projected on their
        top ``rank`` principal directions and diffused (:func:`diffuse`, all types at once).
        Row t of ``mix`` is fitted on type t's valid residuals (:func:`mixing`): the types
        share errors (CRISPR follows RNAi, OE partly opposes it), so a type's correction also
        reads the other types' measured neighbours. A type without valid genes gets no
        correction (nothing honest to fit it on); its training residuals still serve the others."""
        self.clear()
        if not residuals or not valid:
            return
        n_types, n, rank = self.coef.shape
        x0 = torch.zeros(n, n_types * rank, device=self.coef.device)
        for t, (genes, r) in residuals.items():
            if len(genes) < 2:
                continue
            r = r.float().to(x0.device)
            v = torch.linalg.svd(r, full_matrices=False).Vh[:rank]  # (k, L), k <= rank
            # each direction's sign fixed (its largest entry positive): the same residuals up to
            # rounding give the same buffers, not ones with flipped signs
            v = v * torch.sign(v.gather(1, v.abs().argmax(dim=1, keepdim=True)))
            self.basis[t, :len(v)] = v
            x0[genes.to(x0.device), t * rank:t * rank + len(v)] = r @ v.T
        self.coef.copy_(diffuse(graph, x0).view(n, n_types, rank).transpose(0, 1))  # (T, N, rank)
        for t, (genes, e) in valid.items():
            self.mix[t] = mixing(self.diffused(genes), e.float().to(self.coef.device), t)


def mixing(d: torch.Tensor, e: torch.Tensor, own: int) -> torch.Tensor:
    """(T,) factors of least squared error of ``e`` (g, L) by sum over o of c[o] d[:, o]
    (``d`` (g, T, L)), with c[own] >= 0: a type's own diffused errors point the right way or
    are left out. Types whose ``d`` is all zero get 0.

    The other types are mixed in only when that predicts held-out genes better: each valid gene
    left out in turn, the factors refitted on the rest, the errors on it summed (own type alone
    wins ties). Three free factors fitted on the tens of valid genes a small dataset has fit
    noise (on the real example's folds they ranged from -159 to +135); with hundreds the other
    types' share is real and kept."""
    cols = [o for o in range(d.shape[1]) if bool(d[:, o].any())]
    if own in cols and len(cols) > 1:
        cols = min(([own], cols), key=lambda c: held_out_error(d[:, c], e))
    c = torch.zeros(d.shape[1], device=d.device)
    c[cols] = _least_squares(d[:, cols], e)
    if cols and c[own] < 0:
        cols = [o for o in cols if o != own]
        c.zero_()
        c[cols] = _least_squares(d[:, cols], e)
    return c


def _normal_parts(a: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per gene: a_g a_g^T (g, k, k) and a_g e_g (g, k) for ``a`` (g, k, L), ``e`` (g, L), float64."""
    a, e = a.double(), e.double()
    return torch.einsum("gkl,gjl->gkj", a, a), torch.einsum("gkl,gl->gk", a, e)


def _least_squares(a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """(k,) c minimising |e - sum_k c[k] a[:, k]|^2 (normal equations; pinv: any device, any rank)."""
    if a.shape[1] == 0:
        return torch.zeros(0, device=a.device)
    aa, ae = _normal_parts(a, e)
    return (torch.linalg.pinv(aa.sum(0)) @ ae.sum(0)).to(torch.float32)


def held_out_error(a: torch.Tensor, e: torch.Tensor) -> float:
    """Sum over genes g of |e_g - a_g c_(-g)|^2, c_(-g) the least-squares factors fitted
    without gene g (``a`` (g, k, L), ``e`` (g, L)): every refit at once, from the per-gene parts
    of the normal equations."""
    aa, ae = _normal_parts(a, e)
    c = (torch.linalg.pinv(aa.sum(0) - aa) @ (ae.sum(0) - ae)[..., None])[..., 0]  # (g, k)
    return float(((e.double() - torch.einsum("gk,gkl->gl", c, a.double())) ** 2).sum())
