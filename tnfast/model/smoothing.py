"""Residual smoothing: the training genes' errors and signatures, spread over the networks.

Why: the encoder reads the networks and the GenSAN a gene's own other-type signatures, but
nothing reads the signatures measured on a gene's *neighbours*. Errors are shared along the
networks (a gene's response follows its neighbourhood), so the training genes' residuals,
diffused over the multiplex, correct the genes near them: the "correct" step of Correct and
Smooth (Huang et al., ICLR 2021), with the training signatures themselves diffused beside
them (its "smooth" step, as a term of the same fit). It is fitted once, after training, in
closed form.

The layers and reaches are kept apart: each type's residuals and signatures are diffused over
each network layer alone, one hop and by personalised PageRank (many hops). These *channels*
(2 quantities x 2 reaches x layers x types) are mixed by factors fitted on valid, so a type
takes what each layer tells about it (on the synthetic default this beat one diffusion over
the mean of the layers by 0.02-0.03 test PearsonDelta). Many factors fitted on the few dozen
valid genes of a small dataset fit noise, so the fit is chosen by grouped leave-one-out on
valid among nested candidates, from none to every channel under a ridge penalty, the last
only when it wins by more than a standard error.

Trade-off: the residuals are (n_train, 978); they are projected onto their top ``rank``
principal directions first, so the diffusion moves (L*N, 4*rank) floats per type over the
~15 M edges rather than 978-wide rows, and what the model keeps is each type's mixed
correction as ``coef`` (T, N, T*rank) over the stacked directions ``basis`` (T*rank, L): about
60 MB at genome scale at rank 64, and no graph work at prediction time.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..kernels.csr import graph_plan
from .graph import MultiplexGraph

ALPHA = 0.8  # personalised PageRank: z <- (1 - ALPHA) x0 + ALPHA S z
HOPS = 15  # ALPHA**15 = 0.035: farther hops add little
REACHES = ("one-hop", "pagerank")
KINDS = ("residual", "signature")
# Ridge penalties tried on every channel, relative to each channel's own sum of squares on
# valid; largest first, so a tie goes to the stronger penalty.
PENALTIES = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0)


def diffusions(graph: MultiplexGraph, x0: torch.Tensor, alpha: float = ALPHA, hops: int = HOPS) -> torch.Tensor:
    """(N, k) -> (2, L, N, k): per network layer l alone, one hop ``S_l x0`` and ``hops`` steps
    of z <- (1 - alpha) x0 + alpha S_l z from z = x0, where S_l = D^-1/2 A D^-1/2 (A the layer's
    weighted adjacency, D its weighted degrees; a gene without edges in the layer gets 0 from it)."""
    n, n_layers = graph.n_genes, graph.n_layers
    x0 = x0.float()
    if n_layers == 0:
        return x0.new_zeros(2, 0, n, x0.shape[1])
    x = x0.repeat(n_layers, 1)  # layer l's copy in rows l*N..(l+1)*N-1, as the stacked CSR
    if graph.n_edges == 0:
        return torch.stack([torch.zeros_like(x), (1 - alpha) * x]).view(2, n_layers, n, -1)
    plan = graph_plan(graph.indptr, graph.indices)  # the kernels' cached plan: its edge rows, its CSR
    dev = plan.device
    w = graph.edge_weight.float() if graph.edge_weight is not None else torch.ones(plan.e, device=dev)
    deg = torch.zeros(plan.m, device=dev).index_add_(0, plan.dst, w)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg))
    with warnings.catch_warnings():  # torch's note that sparse CSR is "in beta", not for users' eyes
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        s = torch.sparse_csr_tensor(plan.crow, plan.indices, inv[plan.dst] * w * inv[plan.indices],
                                    (plan.m, plan.m), check_invariants=False)  # validated by the plan
    one_hop = s @ x
    z = x
    for _ in range(hops):
        z = (1 - alpha) * x + alpha * (s @ z)
    return torch.stack([one_hop, z]).view(2, n_layers, n, -1)


class ResidualCorrection(nn.Module):
    """(n,) gene indices -> (n, T, L) correction in the units it was fitted in, 0 until :meth:`fit`.

    Buffers (saved with the model): basis (T*rank, L), each type's top ``rank`` principal
    directions of its training residuals, stacked by type; coef (T, N, T*rank), the correction
    of each type at every gene in those directions. ``choice`` (not saved): per fitted type,
    which candidate the held-out errors chose (for the run record).
    """

    def __init__(self, n_genes: int, rank: int, n_landmarks: int, n_types: int):
        super().__init__()
        self.register_buffer("coef", torch.zeros(n_types, n_genes, n_types * rank))
        self.register_buffer("basis", torch.zeros(n_types * rank, n_landmarks))
        self.choice: dict[int, dict] = {}

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        return torch.einsum("tnk,kl->ntl", self.coef.index_select(1, genes.to(self.coef.device)), self.basis)

    @property
    def fitted(self) -> bool:
        return bool(self.coef.any())

    @torch.no_grad()
    def clear(self) -> None:
        self.coef.zero_()
        self.basis.zero_()
        self.choice = {}

    @torch.no_grad()
    def fit(self, graph: MultiplexGraph, train: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
            valid: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Per type t: ``train[t]`` = (training gene indices (m,), their residuals (m, L), their
        signatures as deviations from the training mean (m, L)); ``valid[t]`` = (valid gene
        indices (g,), their residuals (g, L)); residuals of the model without this correction.
        Each type's residuals and signatures, in the residuals' top ``rank`` principal
        directions, are diffused (:func:`diffusions`, every type at once); each type's
        correction is fitted on its valid residuals (:func:`fit_factors`). The types share
        errors (CRISPR follows RNAi, OE partly opposes it), so a type's correction may also read
        the other types' measured neighbours. A type without valid genes gets no correction
        (nothing honest to fit it on); its training genes still serve the others."""
        self.clear()
        if not train or not valid:
            return
        n_types, n, width = self.coef.shape
        rank = width // n_types
        x0 = torch.zeros(n, len(KINDS) * width, device=self.coef.device)  # columns: kind, type, direction
        for t, (genes, r, y) in train.items():
            if len(genes) < 2:
                continue
            r = r.float().to(x0.device)
            v = torch.linalg.svd(r, full_matrices=False).Vh[:rank]  # (k, L), k <= rank
            # each direction's sign fixed (its largest entry positive): the same residuals up to
            # rounding give the same buffers, not ones with flipped signs
            v = v * torch.sign(v.gather(1, v.abs().argmax(dim=1, keepdim=True)))
            self.basis[t * rank:t * rank + len(v)] = v
            rows = genes.to(x0.device)
            for kind, x in enumerate((r, y.float().to(x0.device))):
                x0[rows, kind * width + t * rank:kind * width + t * rank + len(v)] = x @ v.T
        d = diffusions(graph, x0)  # (reach, layer, N, kind * type * direction)
        d = d.view(*d.shape[:3], len(KINDS), n_types, rank)
        for t, (genes, e) in valid.items():
            a = torch.einsum("hlgkoj,ojm->ghlkom", d[:, :, genes.to(x0.device)],
                             self.basis.view(n_types, rank, -1))  # (g, reach, layer, kind, type, L)
            shape = a.shape[1:-1]
            f, self.choice[t] = fit_factors(a.flatten(1, -2), e.float().to(x0.device), candidates(shape, t))
            self.coef[t] = torch.einsum("hlko,hlnkoj->noj", f.view(shape), d).reshape(n, width)


def candidates(shape: tuple[int, int, int, int], own: int) -> list[tuple[str, torch.Tensor, tuple[float, ...], bool]]:
    """The nested fits :func:`fit_factors` chooses among, for channels of ``shape`` (reach,
    layer, kind, type), flattened: (name, tying (channels, k): the channel factors are tying @
    k free factors, penalties to try, whether it must beat the fit before it by a margin). The
    own type's residuals by PageRank averaged over the layers (one factor); every type's (one
    each); every channel (ridge; the margin)."""
    n_reach, n_layers, n_kinds, n_types = shape
    c = n_reach * n_layers * n_kinds * n_types
    pooled = torch.zeros(shape + (n_types,))
    for o in range(n_types):
        pooled[REACHES.index("pagerank"), :, KINDS.index("residual"), o, o] = 1.0 / max(n_layers, 1)
    pooled = pooled.reshape(c, n_types)
    return [("own type", pooled[:, own:own + 1], (0.0,), False), ("every type", pooled, (0.0,), False),
            ("every channel", torch.eye(c), PENALTIES, True)]


def fit_factors(a: torch.Tensor, e: torch.Tensor, fits: list[tuple[str, torch.Tensor, tuple[float, ...], bool]]
                ) -> tuple[torch.Tensor, dict]:
    """(C,) channel factors for ``e`` (g, L) ~ sum over c of f[c] a[:, c] (``a`` (g, C, L)), and
    what was chosen. Starting from no correction (all factors 0), each candidate of ``fits``
    (name, tying, penalties, margin) in turn, at its best penalty (ties to the stronger), replaces
    the fit so far if its grouped leave-one-out errors on the g genes
    (:func:`held_out_errors`) sum lower; with ``margin``, lower by more than one standard error
    of the summed per-gene differences. Why the margin: the best of ten penalties on 84 channels
    is picked by chance on a few dozen genes (on the real example's folds every channel was
    chosen that way and lost 0.02 test PearsonDelta), while a real gain (the synthetic
    default's hundreds of genes) clears it. Channels that are 0 on every gene (a type without
    training genes, a layer without edges) are left out."""
    live = a.flatten(2).abs().amax(dim=2).amax(dim=0) > 0  # (C,)
    errs, tie, parts, name, lam = e.double().pow(2).sum(1), None, None, "none", 0.0  # the fit so far
    none = float(errs.sum())
    for cand, cand_tie, penalties, margin in fits:
        cand_tie = cand_tie.to(a)[live]
        cand_tie = cand_tie[:, cand_tie.abs().sum(0) > 0]
        if cand_tie.shape[1] == 0:
            continue
        cand_parts = _normal_parts(torch.einsum("gcl,ck->gkl", a[:, live], cand_tie), e)
        cand_errs, cand_lam = min(((held_out_errors(cand_parts, lam_), lam_) for lam_ in penalties),
                                  key=lambda x: float(x[0].sum()))
        gain = errs - cand_errs
        need = float(gain.std()) * len(gain) ** 0.5 if margin and len(gain) > 1 else 0.0
        if float(gain.sum()) > need:
            errs, tie, parts, name, lam = cand_errs, cand_tie, cand_parts, cand, cand_lam
    f = torch.zeros(a.shape[1], device=a.device)
    if tie is not None:
        f[live] = tie @ _solve(parts[0].sum(0), parts[1].sum(0), lam).to(f)
    n = max(e.numel(), 1)
    return f, {"channels": name, "penalty": lam, "held_out_mse": float(errs.sum()) / n, "none_mse": none / n}


def _normal_parts(a: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per gene: a_g a_g^T (g, k, k), a_g e_g (g, k) and e_g e_g (g,) for ``a`` (g, k, L),
    ``e`` (g, L), float64."""
    a, e = a.double(), e.double()
    return torch.einsum("gkl,gjl->gkj", a, a), torch.einsum("gkl,gl->gk", a, e), (e * e).sum(1)


# Added to every penalty: keeps the systems solvable when channels are collinear (two layers
# with the same edges) at a cost far below the factors' precision; a batched solve instead of a
# batched pseudo-inverse (SVD per gene) is what makes the leave-one-out refits cheap.
JITTER = 1e-9


def _solve(aa: torch.Tensor, ae: torch.Tensor, lam: float, scale: torch.Tensor | None = None) -> torch.Tensor:
    """(..., k) c minimising |e - a c|^2 + lam sum_k scale[k] c[k]^2 from the normal parts
    ``aa`` (..., k, k), ``ae`` (..., k); ``scale`` defaults to diag(aa), so the penalty is relative
    to each column's own sum of squares."""
    scale = aa.diagonal(dim1=-2, dim2=-1) if scale is None else scale
    reg = torch.diag_embed((lam + JITTER) * scale.clamp_min(1e-300))
    return torch.linalg.solve(aa + reg, ae[..., None])[..., 0]


def held_out_errors(parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor], lam: float = 0.0) -> torch.Tensor:
    """(g,) per gene g, |e_g - a_g c_(-g)|^2, c_(-g) the (penalised, :func:`_solve`) factors
    fitted without gene g, from :func:`_normal_parts` (a, e): every refit at once. The penalty's
    scale is the full fit's, so a refit differs only by the gene it leaves out."""
    aa, ae, ee = parts
    total = aa.sum(0)
    c = _solve(total - aa, ae.sum(0) - ae, lam, total.diagonal())  # (g, k)
    # |e - a c|^2 = ee - 2 c.ae + c^T aa c, per gene
    return ee - 2 * (c * ae).sum(1) + torch.einsum("gk,gkj,gj->g", c, aa, c)
