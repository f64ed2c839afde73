"""Fused multiplex graph-attention (GAT) message passing: Triton kernels, autograd op, public API.

Design trade-off. The forward is flash-style: one program per (row piece, head) streams the
neighbours of one destination row in blocks of BLOCK_E, computing scores, LeakyReLU, an online
softmax and the weighted sum of source features in a single pass; it stores only the output and
the per-row log-sum-exp (M, H) — nothing of size E x D, and the backward saves nothing more. The
backward trades E x H memory for determinism: kernel (a), by destination, recomputes alpha from
the log-sum-exp, gathers h[j] once for d_alpha = <d_out_i, h_j>, writes alpha and
t = alpha * d_alpha per edge (two (H, E) fp32 buffers) and the row sums that give d_a_dst and the
softmax-backward term delta_i = sum_e t_e (summed in fp32 over the edges, so bf16 storage of the
output costs no accuracy); kernel (b), by source over the cached reverse (source-major) CSR,
gathers those to reduce d_h[j] = sum alpha * d_out[i] and d_a_src[j] = sum lrelu'(z) (t - alpha
delta_i). Every output element is written by exactly one program: no atomics, bit-identical
results run to run. Rows (and reverse rows) longer than a threshold are cut into pieces handled by
separate programs that write partial results to a scratch buffer; a small merge kernel combines a
hub's pieces in a fixed order (log-sum-exp rescaling for the forward, plain sums for the
backward), so power-law hubs do not serialise one program and the result stays deterministic.
Heads are the second grid axis (one program per piece and head): more parallel programs than
looping over heads, each gathering contiguous D-wide rows. Storage may be fp32, bf16 or fp16; all
arithmetic and accumulation is fp32. Only long-stable ``tl`` APIs are used (load/store with masks,
max, sum, exp, log, where, arange, program_id) so the kernels compile on Triton 3.6 and later and
run under ``TRITON_INTERPRET=1``; there is no autotuning (fixed configurations from
:func:`_config`) and no ``tl.dot``.

Dispatch: ``backend="auto"`` runs these kernels on CUDA tensors and the pure-PyTorch path of
``reference.py`` on everything else; importing this module does not need Triton.
"""

import math

import torch

from .csr import GraphPlan, SegmentPlan, graph_plan
from .reference import gat_aggregate_reference

from ._triton import HAS_TRITON, interpreted, jit, next_pow2, tl

__all__ = ["gat_aggregate", "gat_aggregate_triton", "HAS_TRITON"]


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
@jit
def _gat_fwd_kernel(
    h_ptr, asrc_ptr, adst_ptr, logw_ptr, idx_ptr,
    seg_row_ptr, seg_start_ptr, seg_end_ptr, seg_slot_ptr,
    out_ptr, lse_ptr, pm_ptr, pl_ptr, pacc_ptr,
    D, H, slope,
    s_hm, s_hh, s_hd,
    s_am, s_ah,
    s_bm, s_bh,
    s_om, s_oh, s_od,
    HAS_W: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
):
    sid = tl.program_id(0)
    hh = tl.program_id(1).to(tl.int64)
    row = tl.load(seg_row_ptr + sid).to(tl.int64)
    start = tl.load(seg_start_ptr + sid)
    end = tl.load(seg_end_ptr + sid)
    slot = tl.load(seg_slot_ptr + sid)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    ad = tl.load(adst_ptr + row * s_bm + hh * s_bh).to(tl.float32)
    m_i = tl.max(tl.full([BLOCK_E], float("-inf"), tl.float32), axis=0)
    l_i = tl.sum(tl.zeros([BLOCK_E], tl.float32), axis=0)
    acc = tl.zeros([BLOCK_D], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs = e0 + tl.arange(0, BLOCK_E)
        emask = offs < end
        src = tl.load(idx_ptr + offs, mask=emask, other=0).to(tl.int64)
        z = tl.load(asrc_ptr + src * s_am + hh * s_ah, mask=emask, other=0.0).to(tl.float32) + ad
        s = tl.where(z > 0, z, z * slope)
        if HAS_W:
            s += tl.load(logw_ptr + offs, mask=emask, other=0.0)
        s = tl.where(emask, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        scale = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        l_i = l_i * scale + tl.sum(p, axis=0)
        hv = tl.load(
            h_ptr + src[:, None] * s_hm + hh * s_hh + d[None, :] * s_hd,
            mask=emask[:, None] & dmask[None, :], other=0.0,
        ).to(tl.float32)
        acc = acc * scale + tl.sum(p[:, None] * hv, axis=0)
        m_i = m_new
    # A whole row writes the result, a piece of a split row its partial (m, l, acc) to its slot.
    # (Masks are built as comparisons: the interpreter mishandles `block_mask & scalar`.)
    whole = slot < 0
    part = slot >= 0
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    lse = tl.where(l_i > 0, m_i + tl.log(l_safe), 0.0)
    tl.store(out_ptr + row * s_om + hh * s_oh + d * s_od,
             (acc / l_safe).to(out_ptr.dtype.element_ty), mask=d < tl.where(whole, D, 0))
    tl.store(lse_ptr + row * H + hh, lse, mask=whole)
    sl = tl.maximum(slot, 0).to(tl.int64)
    tl.store(pm_ptr + sl * H + hh, m_i, mask=part)
    tl.store(pl_ptr + sl * H + hh, l_i, mask=part)
    tl.store(pacc_ptr + (sl * H + hh) * D + d, acc, mask=d < tl.where(part, D, 0))


@jit
def _gat_fwd_merge_kernel(
    hub_row_ptr, hub_ptr_ptr, pm_ptr, pl_ptr, pacc_ptr, out_ptr, lse_ptr,
    D, H, s_om, s_oh, s_od,
    BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    k = tl.program_id(0)
    hh = tl.program_id(1).to(tl.int64)
    row = tl.load(hub_row_ptr + k).to(tl.int64)
    p0 = tl.load(hub_ptr_ptr + k)
    p1 = tl.load(hub_ptr_ptr + k + 1)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    mvec = tl.full([BLOCK_P], float("-inf"), tl.float32)
    for q0 in range(p0, p1, BLOCK_P):
        q = q0 + tl.arange(0, BLOCK_P)
        mvec = tl.maximum(mvec, tl.load(pm_ptr + q * H + hh, mask=q < p1, other=float("-inf")))
    m = tl.max(mvec, axis=0)
    lvec = tl.zeros([BLOCK_P], tl.float32)
    acc = tl.zeros([BLOCK_P, BLOCK_D], tl.float32)
    for q0 in range(p0, p1, BLOCK_P):
        q = q0 + tl.arange(0, BLOCK_P)
        qm = q < p1
        w = tl.exp(tl.load(pm_ptr + q * H + hh, mask=qm, other=float("-inf")) - m)
        lvec += w * tl.load(pl_ptr + q * H + hh, mask=qm, other=0.0)
        pa = tl.load(pacc_ptr + (q * H + hh)[:, None] * D + d[None, :],
                     mask=qm[:, None] & dmask[None, :], other=0.0)
        acc += w[:, None] * pa
    l = tl.sum(lvec, axis=0)
    tl.store(out_ptr + row * s_om + hh * s_oh + d * s_od,
             (tl.sum(acc, axis=0) / l).to(out_ptr.dtype.element_ty), mask=dmask)
    tl.store(lse_ptr + row * H + hh, m + tl.log(l))


@jit
def _sum_pieces_kernel(
    hub_row_ptr, hub_ptr_ptr, part_ptr, out_ptr,
    D, H, s_om, s_oh, s_od,
    BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """out[row, h, :] = sum of the hub's partial rows part[slot, h, :] (fp32), in slot order."""
    k = tl.program_id(0)
    hh = tl.program_id(1).to(tl.int64)
    row = tl.load(hub_row_ptr + k).to(tl.int64)
    p0 = tl.load(hub_ptr_ptr + k)
    p1 = tl.load(hub_ptr_ptr + k + 1)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    acc = tl.zeros([BLOCK_P, BLOCK_D], tl.float32)
    for q0 in range(p0, p1, BLOCK_P):
        q = q0 + tl.arange(0, BLOCK_P)
        acc += tl.load(part_ptr + (q * H + hh)[:, None] * D + d[None, :],
                       mask=(q < p1)[:, None] & dmask[None, :], other=0.0)
    tl.store(out_ptr + row * s_om + hh * s_oh + d * s_od,
             tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=dmask)


@jit
def _gat_bwd_dst_kernel(
    h_ptr, asrc_ptr, adst_ptr, logw_ptr, idx_ptr, dout_ptr, lse_ptr,
    seg_row_ptr, seg_start_ptr, seg_end_ptr, seg_slot_ptr,
    alpha_ptr, t_ptr, stats_ptr, pstats_ptr,
    D, H, E, slope,
    s_hm, s_hh, s_hd,
    s_am, s_ah,
    s_bm, s_bh,
    s_gm, s_gh, s_gd,
    HAS_W: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Per destination piece: alpha and t = alpha * d_alpha per edge ((H, E) fp32 buffers), and
    the row sums A = sum t * lrelu'(z), B = sum alpha * lrelu'(z), C = sum t (= delta, the
    softmax-backward row term) as stats[row, h, 0:3] (or a partial for a split row).
    Then d_z = lrelu'(z) * (t - alpha * C) per edge and d_a_dst = A - C * B per row, with C
    summed over the edges in fp32 (not taken from the stored, possibly bf16, output)."""
    sid = tl.program_id(0)
    hh = tl.program_id(1).to(tl.int64)
    row = tl.load(seg_row_ptr + sid).to(tl.int64)
    start = tl.load(seg_start_ptr + sid)
    end = tl.load(seg_end_ptr + sid)
    slot = tl.load(seg_slot_ptr + sid)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    ad = tl.load(adst_ptr + row * s_bm + hh * s_bh).to(tl.float32)
    lse = tl.load(lse_ptr + row * H + hh)
    do = tl.load(dout_ptr + row * s_gm + hh * s_gh + d * s_gd, mask=dmask, other=0.0).to(tl.float32)
    acc_a = tl.zeros([BLOCK_E], tl.float32)
    acc_b = tl.zeros([BLOCK_E], tl.float32)
    acc_c = tl.zeros([BLOCK_E], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs = e0 + tl.arange(0, BLOCK_E)
        emask = offs < end
        src = tl.load(idx_ptr + offs, mask=emask, other=0).to(tl.int64)
        z = tl.load(asrc_ptr + src * s_am + hh * s_ah, mask=emask, other=0.0).to(tl.float32) + ad
        lr = tl.where(z > 0, 1.0, slope)
        s = z * lr
        if HAS_W:
            s += tl.load(logw_ptr + offs, mask=emask, other=0.0)
        alpha = tl.where(emask, tl.exp(s - lse), 0.0)
        hv = tl.load(
            h_ptr + src[:, None] * s_hm + hh * s_hh + d[None, :] * s_hd,
            mask=emask[:, None] & dmask[None, :], other=0.0,
        ).to(tl.float32)
        t = alpha * tl.sum(hv * do[None, :], axis=1)
        tl.store(alpha_ptr + hh * E + offs, alpha, mask=emask)
        tl.store(t_ptr + hh * E + offs, t, mask=emask)
        acc_a += t * lr
        acc_b += alpha * lr
        acc_c += t
    sa = tl.sum(acc_a, axis=0)
    sb = tl.sum(acc_b, axis=0)
    sc = tl.sum(acc_c, axis=0)
    k = tl.arange(0, 4)
    v = tl.where(k == 0, sa, tl.where(k == 1, sb, sc))
    tl.store(stats_ptr + (row * H + hh) * 3 + k, v, mask=k < tl.where(slot < 0, 3, 0))
    sl = tl.maximum(slot, 0).to(tl.int64)
    tl.store(pstats_ptr + (sl * H + hh) * 3 + k, v, mask=k < tl.where(slot >= 0, 3, 0))


@jit
def _gat_bwd_src_kernel(
    perm_ptr, ridx_ptr, alpha_ptr, t_ptr, dout_ptr, asrc_ptr, adst_ptr, delta_ptr,
    seg_row_ptr, seg_start_ptr, seg_end_ptr, seg_slot_ptr,
    dh_ptr, dasrc_ptr, pdh_ptr, pda_ptr,
    D, H, E, slope,
    s_gm, s_gh, s_gd,
    s_am, s_ah,
    s_bm, s_bh,
    BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Per source piece over the reverse CSR: d_h[j] = sum alpha * d_out[i] and
    d_a_src[j] = sum lrelu'(z) * (t - alpha * delta[i]), z recomputed bit-identically."""
    sid = tl.program_id(0)
    hh = tl.program_id(1).to(tl.int64)
    row = tl.load(seg_row_ptr + sid).to(tl.int64)
    start = tl.load(seg_start_ptr + sid)
    end = tl.load(seg_end_ptr + sid)
    slot = tl.load(seg_slot_ptr + sid)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    a_j = tl.load(asrc_ptr + row * s_am + hh * s_ah).to(tl.float32)
    acc = tl.zeros([BLOCK_D], tl.float32)
    dacc = tl.zeros([BLOCK_E], tl.float32)
    for q0 in range(start, end, BLOCK_E):
        offs = q0 + tl.arange(0, BLOCK_E)
        emask = offs < end
        e = tl.load(perm_ptr + offs, mask=emask, other=0).to(tl.int64)
        i = tl.load(ridx_ptr + offs, mask=emask, other=0).to(tl.int64)
        a = tl.load(alpha_ptr + hh * E + e, mask=emask, other=0.0)
        t = tl.load(t_ptr + hh * E + e, mask=emask, other=0.0)
        z = a_j + tl.load(adst_ptr + i * s_bm + hh * s_bh, mask=emask, other=0.0).to(tl.float32)
        delta = tl.load(delta_ptr + i * H + hh, mask=emask, other=0.0)
        dacc += tl.where(z > 0, 1.0, slope) * (t - a * delta)
        g = tl.load(dout_ptr + i[:, None] * s_gm + hh * s_gh + d[None, :] * s_gd,
                    mask=emask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(a[:, None] * g, axis=0)
    whole = slot < 0
    part = slot >= 0
    sl = tl.maximum(slot, 0).to(tl.int64)
    tl.store(dh_ptr + (row * H + hh) * D + d, acc.to(dh_ptr.dtype.element_ty),
             mask=d < tl.where(whole, D, 0))
    tot = tl.sum(dacc, axis=0)
    tl.store(dasrc_ptr + row * H + hh, tot.to(dasrc_ptr.dtype.element_ty), mask=whole)
    tl.store(pdh_ptr + (sl * H + hh) * D + d, acc, mask=d < tl.where(part, D, 0))
    tl.store(pda_ptr + sl * H + hh, tot, mask=part)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

def _config(d: int, avg_degree: float) -> dict:
    """Fixed launch configuration: BLOCK_D covers D (masked), BLOCK_E sized to the mean degree
    and capped so a (BLOCK_E, BLOCK_D) fp32 tile stays at 4K elements; rows longer than
    ``split`` edges are cut into pieces of ``split`` edges."""
    block_d = max(8, next_pow2(d))
    cap = max(8, min(64, 4096 // block_d))
    block_e = min(cap, max(16, next_pow2(int(avg_degree))))
    num_warps = 4 if block_e * block_d >= 2048 else 2
    return {"BLOCK_E": block_e, "BLOCK_D": block_d, "num_warps": num_warps, "split": 8 * block_e}


BLOCK_P = 16  # pieces combined per step by the merge kernels


def _scratch(n: int, *shape, device) -> torch.Tensor:
    # Kernels always receive a valid pointer, even when no row is split.
    return torch.empty(max(n, 1), *shape, dtype=torch.float32, device=device)


def _forward(h, a_src, a_dst, logw, slope, plan: GraphPlan, segs: SegmentPlan, cfg):
    m, nh, d = h.shape
    out = torch.empty(m, nh, d, dtype=h.dtype, device=h.device)
    lse = torch.empty(m, nh, dtype=torch.float32, device=h.device)
    if m == 0 or nh == 0 or d == 0:
        return out.zero_(), lse.zero_()
    pm = _scratch(segs.num_slots, nh, device=h.device)
    pl = _scratch(segs.num_slots, nh, device=h.device)
    pacc = _scratch(segs.num_slots, nh, d, device=h.device)
    lw = logw if logw is not None else plan.indptr  # dummy pointer when unused
    _gat_fwd_kernel[(segs.num_segments, nh)](
        h, a_src, a_dst, lw, plan.indices,
        segs.row, segs.start, segs.end, segs.slot,
        out, lse, pm, pl, pacc,
        d, nh, slope,
        h.stride(0), h.stride(1), h.stride(2),
        a_src.stride(0), a_src.stride(1),
        a_dst.stride(0), a_dst.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        HAS_W=logw is not None, BLOCK_E=cfg["BLOCK_E"], BLOCK_D=cfg["BLOCK_D"],
        num_warps=cfg["num_warps"],
    )
    if segs.num_hubs:
        _gat_fwd_merge_kernel[(segs.num_hubs, nh)](
            segs.hub_rows, segs.hub_ptr, pm, pl, pacc, out, lse,
            d, nh, out.stride(0), out.stride(1), out.stride(2),
            BLOCK_P=BLOCK_P, BLOCK_D=cfg["BLOCK_D"], num_warps=cfg["num_warps"],
        )
    return out, lse


def _backward(d_out, h, a_src, a_dst, logw, lse, slope, plan: GraphPlan, cfg):
    m, nh, d = h.shape
    e = plan.e
    dev = h.device
    dh = torch.empty(m, nh, d, dtype=h.dtype, device=dev)
    dsrc = torch.empty(m, nh, dtype=a_src.dtype, device=dev)
    if m == 0 or nh == 0 or d == 0:
        return dh.zero_(), dsrc.zero_(), torch.zeros_like(a_dst)
    split = cfg["split"]
    segs = plan.segments(split)
    alpha = torch.empty(nh, max(e, 1), dtype=torch.float32, device=dev)
    t = torch.empty(nh, max(e, 1), dtype=torch.float32, device=dev)
    stats = torch.empty(m, nh, 3, dtype=torch.float32, device=dev)
    pstats = _scratch(segs.num_slots, nh, 3, device=dev)
    lw = logw if logw is not None else plan.indptr  # dummy pointer when unused
    _gat_bwd_dst_kernel[(segs.num_segments, nh)](
        h, a_src, a_dst, lw, plan.indices, d_out, lse,
        segs.row, segs.start, segs.end, segs.slot,
        alpha, t, stats, pstats,
        d, nh, e, slope,
        h.stride(0), h.stride(1), h.stride(2),
        a_src.stride(0), a_src.stride(1),
        a_dst.stride(0), a_dst.stride(1),
        d_out.stride(0), d_out.stride(1), d_out.stride(2),
        HAS_W=logw is not None, BLOCK_E=cfg["BLOCK_E"], BLOCK_D=cfg["BLOCK_D"],
        num_warps=cfg["num_warps"],
    )
    if segs.num_hubs:
        _sum_pieces_kernel[(segs.num_hubs, nh)](
            segs.hub_rows, segs.hub_ptr, pstats, stats, 3, nh, stats.stride(0), stats.stride(1), 1,
            BLOCK_P=BLOCK_P, BLOCK_D=8, num_warps=1,
        )
    delta = stats[:, :, 2].contiguous()
    ddst = (stats[:, :, 0] - delta * stats[:, :, 1]).to(a_dst.dtype)
    rev = plan.reverse
    rsegs = plan.reverse_segments(split)
    pdh = _scratch(rsegs.num_slots, nh, d, device=dev)
    pda = _scratch(rsegs.num_slots, nh, device=dev)
    _gat_bwd_src_kernel[(rsegs.num_segments, nh)](
        rev.perm, rev.indices, alpha, t, d_out, a_src, a_dst, delta,
        rsegs.row, rsegs.start, rsegs.end, rsegs.slot,
        dh, dsrc, pdh, pda,
        d, nh, e, slope,
        d_out.stride(0), d_out.stride(1), d_out.stride(2),
        a_src.stride(0), a_src.stride(1),
        a_dst.stride(0), a_dst.stride(1),
        BLOCK_E=cfg["BLOCK_E"], BLOCK_D=cfg["BLOCK_D"], num_warps=cfg["num_warps"],
    )
    if rsegs.num_hubs:
        _sum_pieces_kernel[(rsegs.num_hubs, nh)](
            rsegs.hub_rows, rsegs.hub_ptr, pdh, dh, d, nh, dh.stride(0), dh.stride(1), dh.stride(2),
            BLOCK_P=BLOCK_P, BLOCK_D=cfg["BLOCK_D"], num_warps=cfg["num_warps"],
        )
        _sum_pieces_kernel[(rsegs.num_hubs, nh)](
            rsegs.hub_rows, rsegs.hub_ptr, pda, dsrc, 1, nh, dsrc.stride(0), dsrc.stride(1), 0,
            BLOCK_P=BLOCK_P, BLOCK_D=8, num_warps=1,
        )
    return dh, dsrc, ddst


class _GATTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, a_src, a_dst, logw, slope: float, plan: GraphPlan, cfg: dict):
        segs = plan.segments(cfg["split"])
        out, lse = _forward(h, a_src, a_dst, logw, slope, plan, segs, cfg)
        ctx.slope, ctx.plan, ctx.cfg = slope, plan, cfg
        ctx.save_for_backward(h, a_src, a_dst, logw, lse)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, d_out, _d_lse):
        h, a_src, a_dst, logw, lse = ctx.saved_tensors
        dh, dsrc, ddst = _backward(d_out, h, a_src, a_dst, logw, lse, ctx.slope, ctx.plan, ctx.cfg)
        need = ctx.needs_input_grad
        return (dh if need[0] else None, dsrc if need[1] else None, ddst if need[2] else None,
                None, None, None, None)


def gat_aggregate_triton(
    h, a_src, a_dst, indptr, indices, edge_weight=None, negative_slope=0.2, *,
    split_threshold: int | None = None, block_e: int | None = None, return_lse: bool = False,
):
    """The Triton path of :func:`gat_aggregate` (inputs assumed validated).

    ``split_threshold``: rows with more edges are cut into pieces of this many edges (default
    from :func:`_config`, 8 x BLOCK_E); ``block_e`` overrides BLOCK_E (a power of two). Both
    exist so tests can exercise the multi-block and split paths on small graphs.
    """
    if not HAS_TRITON:
        raise RuntimeError("gat_aggregate(backend='triton') needs the triton package; use backend='reference'")
    if h.device.type != "cuda" and not interpreted(_gat_fwd_kernel):
        raise RuntimeError(
            "gat_aggregate(backend='triton') on CPU tensors needs TRITON_INTERPRET=1 set before triton"
            " is imported (or use backend='reference' / 'auto')"
        )
    plan = graph_plan(indptr, indices)
    m, nh, d = h.shape
    cfg = dict(_config(d, plan.e / max(plan.m, 1)))
    if block_e is not None:
        if block_e < 1 or block_e & (block_e - 1):
            raise ValueError(f"block_e must be a power of two, got {block_e}")
        cfg["BLOCK_E"] = block_e
        cfg["split"] = 8 * block_e
    if split_threshold is not None:
        if split_threshold < 1:
            raise ValueError(f"split_threshold must be >= 1, got {split_threshold}")
        cfg["split"] = int(split_threshold)
    logw = None if edge_weight is None else edge_weight.detach().to(torch.float32).log().contiguous()
    out, lse = _GATTriton.apply(h, a_src, a_dst, logw, float(negative_slope), plan, cfg)
    return (out, lse) if return_lse else out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _validate(h, a_src, a_dst, indptr, indices, edge_weight, negative_slope) -> None:
    for name, t in (("h", h), ("a_src", a_src), ("a_dst", a_dst), ("indptr", indptr), ("indices", indices)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"gat_aggregate: {name} must be a torch.Tensor, got {type(t).__name__}")
    if h.dim() != 3:
        raise ValueError(f"gat_aggregate: h must be (M, H, D), got shape {tuple(h.shape)}")
    m, nh, _ = h.shape
    if h.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"gat_aggregate: h must be a floating tensor, got {h.dtype}")
    for name, t in (("a_src", a_src), ("a_dst", a_dst)):
        if tuple(t.shape) != (m, nh):
            raise ValueError(f"gat_aggregate: {name} must be (M, H) = {(m, nh)}, got {tuple(t.shape)}")
        if t.dtype != h.dtype:
            raise ValueError(f"gat_aggregate: {name} has dtype {t.dtype}, h has {h.dtype}; they must match")
    if indptr.dim() != 1 or indptr.numel() != m + 1:
        raise ValueError(f"gat_aggregate: indptr must be (M+1,) = ({m + 1},), got {tuple(indptr.shape)}")
    if indptr.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"gat_aggregate: indptr must be int32 or int64, got {indptr.dtype}")
    if indices.dim() != 1:
        raise ValueError(f"gat_aggregate: indices must be 1-D (E,), got shape {tuple(indices.shape)}")
    if indices.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"gat_aggregate: indices must be int32 (or int64), got {indices.dtype}")
    if edge_weight is not None:
        if not isinstance(edge_weight, torch.Tensor):
            raise ValueError("gat_aggregate: edge_weight must be a torch.Tensor or None")
        if tuple(edge_weight.shape) != (indices.numel(),):
            raise ValueError(
                f"gat_aggregate: edge_weight must be (E,) = ({indices.numel()},), got {tuple(edge_weight.shape)}"
            )
        if edge_weight.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"gat_aggregate: edge_weight must be floating, got {edge_weight.dtype}")
    devs = {t.device for t in (h, a_src, a_dst, indptr, indices) + (() if edge_weight is None else (edge_weight,))}
    if len(devs) != 1:
        raise ValueError(f"gat_aggregate: all tensors must be on one device, got {sorted(map(str, devs))}")
    if edge_weight is not None:  # on every device, once per weight tensor (the graph's cached plan)
        try:
            graph_plan(indptr, indices).check_weights(edge_weight)
        except ValueError as e:
            raise ValueError(f"gat_aggregate: {e}") from None
    if not isinstance(negative_slope, (int, float)) or not math.isfinite(negative_slope):
        raise ValueError(f"gat_aggregate: negative_slope must be a finite number, got {negative_slope!r}")


def gat_aggregate(
    h: torch.Tensor,
    a_src: torch.Tensor,
    a_dst: torch.Tensor,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    edge_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-head graph-attention aggregation over a CSR by destination.

    Args:
        h: (M, H, D) source features (float32, bfloat16, float16 or float64).
        a_src, a_dst: (M, H) per-node attention terms, same dtype as ``h`` (the model computes
            them as dot products of the features with learned vectors).
        indptr: (M+1,) int64 or int32; row ``i`` owns edges ``indptr[i]:indptr[i+1]``.
        indices: (E,) int32 source node of each edge (int64 accepted).
        edge_weight: optional (E,) finite weights > 0, entering the score as ``log w``.
        negative_slope: LeakyReLU slope.
        backend: ``"auto"`` (CUDA tensors of 16 or 32 bits and Triton installed → Triton, else
            reference: float64 goes to the reference, since the Triton kernels accumulate in
            fp32), ``"triton"`` (forced; CPU tensors need ``TRITON_INTERPRET=1``; float64 then
            gets fp32 accuracy), ``"reference"``.

    Returns:
        out (M, H, D), dtype of ``h``::

            out[i, h] = sum_{edges j->i} alpha_ijh * h[j, h]
            alpha_ijh = softmax over the edges into i of LeakyReLU(a_src[j,h] + a_dst[i,h]) + log w_ij

        A row without edges gives zeros. Gradients flow to ``h``, ``a_src`` and ``a_dst`` (never
        to the graph or the edge weights). Duplicate edges count separately.

    A multiplex of L layers over N nodes is one call on the block-diagonal CSR from
    :func:`tnfast.kernels.stack_multiplex` with features of shape (L*N, H, D). The graph is
    validated (indptr monotone from 0 to E, indices in range) and its derived structures (reverse
    CSR, row pieces) cached the first time a given ``indptr``/``indices`` pair is seen.
    """
    if backend not in ("auto", "triton", "reference"):
        raise ValueError(f"gat_aggregate: backend must be 'auto', 'triton' or 'reference', got {backend!r}")
    _validate(h, a_src, a_dst, indptr, indices, edge_weight, negative_slope)
    if backend == "auto":
        backend = "triton" if (h.device.type == "cuda" and HAS_TRITON and h.dtype != torch.float64) else "reference"
    if backend == "triton":
        return gat_aggregate_triton(h, a_src, a_dst, indptr, indices, edge_weight, negative_slope)
    return gat_aggregate_reference(h, a_src, a_dst, indptr, indices, edge_weight, negative_slope)

