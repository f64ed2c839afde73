"""Pure-PyTorch semantics of every op in ``tnfast.kernels``: the test oracle and the CPU path.

GAT message passing (see :func:`tnfast.kernels.gat_aggregate` for the full contract)::

    z[e,h]     = a_src[src_e, h] + a_dst[dst_e, h]
    s[e,h]     = LeakyReLU(z[e,h]) + log w_e
    alpha[e,h] = softmax of s[., h] over the edges e into dst_e
    out[i,h]   = sum_{e into i} alpha[e,h] * h[src_e, h]        (zeros for a row with no edges)

Two implementations live here:

* :func:`gat_aggregate_reference` — the production CPU path (and the fallback on any device
  without Triton). Per head, on one contiguous (M, D) copy of that head at a time: edge scores
  (E,) → per-row max and sum with ``torch.segment_reduce`` over ``indptr`` → unnormalised weights
  p → ``out_h = CSR(p) @ h_h / sum`` with sparse ``addmm``. A hand-written backward (autograd never
  sees the sparse ops: letting it differentiate ``sparse.mm`` densifies N x N and is ~100x
  slower), with 1/sum folded into the rows of d_out (g = d_out / sum): ``d_h_h = CSR(p)^T @ g``
  over the cached reverse CSR; the softmax backward ``d_s = p * (<g_i, h_j> - <g_i, out_i>)`` as
  one ``sampled_addmm`` of [g, -<g, out>] and [h, 1] on the graph's pattern; the LeakyReLU
  backward; then a segment sum per destination (``d_a_dst``) and a scatter-add per source
  (``d_a_src``; serial, hence deterministic, on CPU; segment sums over the reverse CSR on other
  devices). Design trade-off: the forward keeps p and z > 0 per edge and head (5 bytes x E x H
  while training, nothing under no_grad) so the backward needs one (E,) gather per head instead
  of five; on the 2 CPU cores the gathers dominate and this made forward+backward ~1.4x faster.
  Never an E x D or E x H x D tensor. Half-precision inputs are computed in float32, float64 in
  float64.
* :func:`gat_aggregate_naive` — per-edge gathers and scatters with plain autograd, E x H x D
  memory: obviously correct, for tests only (independent oracle for both fast paths).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .csr import GraphPlan, graph_plan

__all__ = ["gat_aggregate_reference", "gat_aggregate_naive"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _head(x: torch.Tensor, k: int, cdt: torch.dtype) -> torch.Tensor:
    """Head k of an (M, H, D) tensor as a contiguous (M, D) matrix in the compute dtype (a
    copy of one head at a time: the sparse kernels are slow on strided operands)."""
    return x[:, k].to(cdt).contiguous()


def _spmm_into(out: torch.Tensor, a: torch.Tensor, x: torch.Tensor) -> None:
    """out[...] = a @ x for a sparse CSR ``a``; ``out`` may be a strided view (one head)."""
    if out.device.type == "cpu":  # MKL writes the strided view directly
        torch.addmm(out, a, x, beta=0, out=out)
    else:
        out.copy_(torch.sparse.mm(a, x))


class _GATReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, a_src, a_dst, logw, slope: float, plan: GraphPlan, training: bool):
        m, nh, d = h.shape
        cdt = _compute_dtype(h.dtype)
        out = torch.zeros(m, nh, d, dtype=cdt, device=h.device)
        lse = torch.full((nh, m), float("-inf"), dtype=cdt, device=h.device)
        # kept for the backward, per head: the unnormalised edge weights p (E,), z > 0 (E,) for
        # the LeakyReLU and the row sums of p (M,); recomputing them would cost three (E,) gathers
        weights, positive = [], []
        den_all = torch.zeros(nh, m if training else 0, dtype=cdt, device=h.device)
        if plan.e and out.numel():
            asrc = a_src.to(cdt).t().contiguous()
            adst = a_dst.to(cdt).t().contiguous()
            lg = None if logw is None else logw.to(cdt)
            for k in range(nh):
                z = asrc[k].index_select(0, plan.indices)
                z += adst[k].index_select(0, plan.dst)
                s = F.leaky_relu(z, slope)
                if lg is not None:
                    s += lg
                mx = torch.segment_reduce(s, "max", offsets=plan.crow)  # -inf on empty rows
                s -= mx.index_select(0, plan.dst)
                p = s.exp_()  # unnormalised weights in (0, 1]
                den = torch.segment_reduce(p, "sum", offsets=plan.crow)
                lse[k] = mx + den.log()
                # normalise the (M, D) output rather than the (E,) weights
                ok = out[:, k]
                _spmm_into(ok, plan.csr(p), _head(h, k, cdt))
                ok /= den.clamp_min(torch.finfo(cdt).tiny)[:, None]
                if training:
                    weights.append(p)
                    positive.append(z > 0)
                    den_all[k] = den
                del z, s
        ctx.slope, ctx.plan, ctx.src_dtype, ctx.dst_dtype = slope, plan, a_src.dtype, a_dst.dtype
        ctx.save_for_backward(h, den_all, out, *weights, *positive)
        out = out.to(h.dtype)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, d_out, _d_lse):
        h, den_all, out, *saved = ctx.saved_tensors
        plan: GraphPlan = ctx.plan
        slope = ctx.slope
        need_h, need_src, need_dst = ctx.needs_input_grad[:3]
        m, nh, d = h.shape
        weights, positive = saved[:nh], saved[nh:]
        cdt = _compute_dtype(h.dtype)
        dh = torch.zeros(m, nh, d, dtype=cdt, device=h.device) if need_h else None
        dsrc = torch.zeros(nh, m, dtype=cdt, device=h.device) if need_src else None
        ddst = torch.zeros(nh, m, dtype=cdt, device=h.device) if need_dst else None
        if plan.e and h.numel() and d_out is not None:
            need_a = need_src or need_dst
            rev = plan.reverse if (need_h or h.device.type != "cpu") else None
            ones = torch.ones(m, 1, dtype=cdt, device=h.device)
            one, leak = torch.tensor(1.0, dtype=cdt), torch.tensor(slope, dtype=cdt)
            for k in range(nh):
                den = den_all[k]
                # alpha = p / den[dst]: fold 1/den into d_out's rows instead of the (E,) weights
                inv = torch.where(den > 0, 1.0 / den, 0.0)
                gk = _head(d_out, k, cdt) * inv[:, None]
                p = weights[k]
                if need_h:
                    _spmm_into(dh[:, k], plan.reverse_csr(p.index_select(0, rev.perm)), gk)
                if need_a:
                    # softmax backward: d_s = alpha * (<d_out[dst], h[src]> - delta[dst]) with the
                    # row term delta_i = <d_out_i, out_i>; one sampled product on the graph's
                    # pattern computes <gk_i, h_j> - delta_i / den_i (no E x D tensor, no gather)
                    delta = (gk * out[:, k]).sum(1, keepdim=True)
                    lhs = torch.cat([gk, -delta], 1)
                    rhs = torch.cat([_head(h, k, cdt), ones], 1)
                    ds = torch.sparse.sampled_addmm(plan.csr(p), lhs, rhs.t(), beta=0.0).values()
                    del lhs, rhs
                    ds *= p
                    dz = ds.mul_(torch.where(positive[k], one, leak))  # LeakyReLU backward
                    if need_dst:
                        ddst[k] = torch.segment_reduce(dz, "sum", offsets=plan.crow)
                    if need_src:
                        if dz.device.type == "cpu":  # serial, hence deterministic, on CPU
                            dsrc[k].index_add_(0, plan.indices, dz)
                        else:  # no atomics elsewhere: segment sums over the reverse CSR
                            dsrc[k] = torch.segment_reduce(
                                dz.index_select(0, rev.perm), "sum", offsets=plan.rev_crow
                            )
        return (
            None if dh is None else dh.to(h.dtype),
            None if dsrc is None else dsrc.t().to(ctx.src_dtype),
            None if ddst is None else ddst.t().to(ctx.dst_dtype),
            None,
            None,
            None,
            None,
        )


def gat_aggregate_reference(
    h: torch.Tensor,
    a_src: torch.Tensor,
    a_dst: torch.Tensor,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    edge_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    *,
    return_lse: bool = False,
):
    """Fast pure-PyTorch GAT aggregation (same contract as ``tnfast.kernels.gat_aggregate``).

    Shapes: h (M, H, D); a_src, a_dst (M, H); indptr (M+1,) int32/int64; indices (E,) int32;
    edge_weight (E,) > 0 or None. Returns out (M, H, D) in h's dtype (and, with
    ``return_lse``, the (M, H) per-row log-sum-exp of the scores, -inf on empty rows).
    Inputs are assumed validated (``gat_aggregate`` does it).
    """
    plan = graph_plan(indptr, indices)
    logw = None if edge_weight is None else edge_weight.detach().to(_compute_dtype(h.dtype)).log()
    # ctx.needs_input_grad is True under no_grad too: ask grad mode here, where it is visible
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (h, a_src, a_dst))
    out, lse = _GATReference.apply(h, a_src, a_dst, logw, float(negative_slope), plan, training)
    return (out, lse.t()) if return_lse else out


def gat_aggregate_naive(
    h: torch.Tensor,
    a_src: torch.Tensor,
    a_dst: torch.Tensor,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    edge_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """Obviously-correct GAT aggregation by per-edge gathers/scatters and plain autograd.

    Shapes as in :func:`gat_aggregate_reference`. Materialises (E, H, D): tests only.
    """
    m, nh, d = h.shape
    src = indices.long()
    dst = torch.repeat_interleave(torch.arange(m, device=h.device), indptr.long().diff())
    s = F.leaky_relu(a_src[src] + a_dst[dst], negative_slope)  # (E, H)
    if edge_weight is not None:
        s = s + edge_weight.to(s.dtype).log()[:, None]
    idx = dst[:, None].expand(-1, nh)
    mx = torch.full((m, nh), float("-inf"), dtype=s.dtype, device=h.device)
    mx = mx.scatter_reduce(0, idx, s.detach(), "amax")  # softmax is shift-invariant: no grad needed
    p = torch.exp(s - mx[dst])
    den = torch.zeros(m, nh, dtype=s.dtype, device=h.device).index_add(0, dst, p)
    alpha = p / den[dst]
    msg = alpha[:, :, None] * h[src]  # (E, H, D)
    return torch.zeros(m, nh, d, dtype=msg.dtype, device=h.device).index_add(0, dst, msg)


# --------------------------------------------------------------------------------------------
# Attention (see tnfast.kernels.attention for the full contract):
#     out = softmax(q @ k^T * scale, dim=-1) @ v,   q, k, v (B, H, L, D),   scale = 1/sqrt(D) by default
# --------------------------------------------------------------------------------------------
__all__ += ["attention_reference", "attention_naive"]


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Pure-PyTorch attention, the CPU path: ``torch.nn.functional.scaled_dot_product_attention``.

    Shapes: q, k, v (B, H, L, D); returns (B, H, L, D) in the input dtype. No mask, no dropout;
    ``scale`` defaults to 1/sqrt(D). SDPA picks its own backend (fused flash/memory-efficient
    kernels where they apply, its math path otherwise) and supplies the gradients. Inputs are
    assumed validated (``attention`` does it).
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if q.numel() == 0 or k.numel() == 0:
        # torch 2.11's CPU SDPA kernel kills the process on empty inputs (seen on the GPU
        # machine's torch); the plain path returns the right empty or zero result.
        return attention_naive(q, k, v, scale)
    return F.scaled_dot_product_attention(q, k, v, scale=float(scale))


def attention_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Plain matmul-softmax-matmul attention, as TranscriptionNet does it: materialises the
    (B, H, L, L) scores. The independent test oracle and the benchmark's baseline."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    return torch.matmul(torch.softmax(scores, dim=-1), v)
