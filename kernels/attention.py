"""Fused scaled-dot-product attention for GenSAN's axial attention: Triton kernels, autograd op, API.

Design trade-off. GenSAN attends across the 978 landmark columns (long sequence, head dim 3-16)
and across the 3 perturbation-type rows (L = 3, head dim up to 128). The forward is flash-style:
one program per (query block, batch x head) streams the keys/values in blocks of BLOCK_N with an
online softmax (base-2 exponentials, the scale folded into the exponent), so the L x L scores
never exist in memory; it stores the output and the per-row natural-log log-sum-exp (B, H, L)
in fp32. The backward is FlashAttention-2's and recomputes the probabilities from that
log-sum-exp instead of saving them: a preprocess kernel computes delta = rowsum(dO * O); a dK/dV
kernel owns one key block and iterates over all query blocks; a dQ kernel owns one query block
and iterates over all key blocks. Recomputing the scores twice (once per kernel) costs FLOPs but
every gradient element is written by exactly one program: no atomics, no partial buffers, and
bit-identical gradients run to run. When the whole sequence fits in one tile (L <= BLOCK, e.g.
the 3-row attention) a single fused backward kernel computes delta, dQ, dK and dV in one launch
instead of three, still one program per (batch, head).

At D <= 16 a score costs one or two MMA steps but several scalar instructions (scale, max,
exp2, sum, cast), so the elementwise work per score is what the column attention pays for. The
streaming loops therefore run the L // BLOCK full blocks with no sequence mask at all and one
masked tail block after them (978 = 15 x 64 + 18): full blocks skip the bounds selects, and the
forward takes the row max on the raw scores and folds scale and max into one FMA per score
(``s * scale - m``; a negative scale takes the min instead, a compile-time switch). In the
sm_90 code of the bf16 64 x 64 tiles (Triton 3.6, D = 8) that takes the forward's loop from 478
to 263 instructions, dK/dV's from 739 to 350 and dQ's from 416 to 265. D is a compile-time
constant, so the head-dim masks are known per element.

Tiles follow the head dim: BLOCK_D = max(16, next_pow2(D)) (16 is the smallest operand dimension
tl.dot accepts on a GPU) so D = 3 is padded to 16 and not to 64, and BLOCK_M/BLOCK_N, num_warps
and num_stages come from :func:`_config`, a fixed table on L and D. There is no autotuning: its
pick can differ between processes, which would break bit-identical runs, and the interpreter does
not run it; ``benchmarks/sweep_attention.py`` times the candidates on the GPU and the table is set
from its results (:func:`attention_triton` takes every setting as an override for that).

Precision. Storage is fp32, bf16 or fp16; every dot product accumulates in fp32 and outputs and
gradients are stored in the input dtype. For fp32 the dots run with ``input_precision="ieee"``
(``_FP32_PRECISION``), the setting verified on an H200 (rel RMS ~1e-6 against float64 there).
``fp32_precision="tf32x3"`` is the candidate replacement: each operand is split into a tf32 head
and a tf32 remainder and three tensor-core MMAs replace the scalar FMA loop, at an error close
to fp32's (emulated on the GenSAN shapes against float64: rel RMS 1e-7 to 9e-7 for tf32x3, 1e-7
to 8e-7 for ieee, 3e-4 to 1e-3 for plain "tf32"). Its sm_90 code for a 64 x 64 forward loop at
D = 8 has 970 instructions against 1657 for "ieee", but three times the operand registers:
fp32's dK/dV kernel spills at 64 x 64 with 4 warps and does not at 128 x 32 with 8 or 64 x 32
with 4, so it may want other tiles than bf16. It has compiled for sm_90 but not yet run on a
GPU, so it is not the default until the sweep (which times both) has measured it. Half-precision
inputs ignore the setting. Only long-stable ``tl`` APIs are used (load/store with masks, dot,
trans, exp2, log2, max, min, sum, where, arange), so the kernels compile on Triton 3.6 and later
and run under ``TRITON_INTERPRET=1`` (which computes every dot in plain fp32 whatever the
precision).

Dispatch: ``backend="auto"`` runs these kernels on CUDA tensors (fp32/bf16/fp16) and the
pure-PyTorch path of ``reference.py`` (torch's ``scaled_dot_product_attention``) on everything
else; importing this module does not need Triton.
"""

import functools
import math
import numbers

import torch

from .reference import attention_reference

from ._triton import HAS_TRITON, interpreted, jit, next_pow2, tl, triton

__all__ = ["attention", "attention_triton"]

_MAX_D = 128
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# fp32 dot precision. "ieee": the whole dot on the scalar FMA units (verified on a GPU);
# "tf32x3": three tf32 tensor-core MMAs, error close to fp32 (see above; not yet run on a GPU);
# "tf32": one MMA, ~1e-3 relative error.
_FP32_PRECISION = "ieee"
_FP32_PRECISIONS = ("tf32x3", "ieee", "tf32")


# --------------------------------------------------------------------------------------------
# Kernels. Every tensor is addressed through its (B, H, L, D) strides; the grid is 1-D with
# program id = bh * NUM_BLOCKS + block, so the blocks of one (batch, head) run side by side
# (its K/V stay in L2) and B x H is not limited by the 65,535 cap of the 2nd/3rd grid axes.
# The streaming loops call a block step twice: MASKED=False for the L // BLOCK full blocks,
# MASKED=True for the one tail block (when L is not a multiple of the block).
# --------------------------------------------------------------------------------------------
@jit
def _attn_fwd_step(
    q, acc, l_i, m_i, k_ptr, v_ptr, cols, offs_d, d_mask, L, qk_scale,
    s_kl, s_kd, s_vl, s_vd,
    MASKED: tl.constexpr, POS_SCALE: tl.constexpr, PRECISION: tl.constexpr,
):
    """One key block of the online softmax; returns the updated (acc, l_i, m_i)."""
    if MASKED:
        n_mask = cols < L
        kt_mask = d_mask[:, None] & n_mask[None, :]
        v_mask = n_mask[:, None] & d_mask[None, :]
    else:
        kt_mask = d_mask[:, None]
        v_mask = d_mask[None, :]
    kt = tl.load(k_ptr + cols[None, :] * s_kl + offs_d[:, None] * s_kd, mask=kt_mask, other=0.0)  # (BLOCK_D, BLOCK_N)
    v = tl.load(v_ptr + cols[:, None] * s_vl + offs_d[None, :] * s_vd, mask=v_mask, other=0.0)
    s = tl.dot(q, kt, input_precision=PRECISION)
    if MASKED:
        # Scale before masking: -inf times a zero or negative scale would give NaN or +inf.
        s = tl.where(n_mask[None, :], s * qk_scale, float("-inf"))
        # The tail holds at least one valid key, so m_new is finite and no NaN appears.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
    else:
        # max(s * c) = c * max(s) for c >= 0 and c * min(s) for c < 0 (rounding is monotone).
        if POS_SCALE:
            m_new = tl.maximum(m_i, tl.max(s, axis=1) * qk_scale)
        else:
            m_new = tl.maximum(m_i, tl.min(s, axis=1) * qk_scale)
        p = tl.exp2(s * qk_scale - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
    sm_scale, H, L, D: tl.constexpr, NUM_M,
    s_qb, s_qh, s_ql, s_qd,
    s_kb, s_kh, s_kl, s_kd,
    s_vb, s_vh, s_vl, s_vd,
    s_ob, s_oh, s_ol, s_od,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    POS_SCALE: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid % NUM_M
    bh = pid // NUM_M
    b = (bh // H).to(tl.int64)
    hh = (bh % H).to(tl.int64)
    q_ptr += b * s_qb + hh * s_qh
    k_ptr += b * s_kb + hh * s_kh
    v_ptr += b * s_vb + hh * s_vh
    o_ptr += b * s_ob + hh * s_oh
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < L
    d_mask = offs_d < D
    q = tl.load(q_ptr + offs_m[:, None] * s_ql + offs_d[None, :] * s_qd,
                mask=m_mask[:, None] & d_mask[None, :], other=0.0)
    qk_scale = sm_scale * 1.4426950408889634  # work in base 2: exp(x) = exp2(x * log2 e)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    n_full = L // BLOCK_N * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        acc, l_i, m_i = _attn_fwd_step(q, acc, l_i, m_i, k_ptr, v_ptr, start_n + offs_n, offs_d, d_mask, L,
                                       qk_scale, s_kl, s_kd, s_vl, s_vd,
                                       MASKED=False, POS_SCALE=POS_SCALE, PRECISION=PRECISION)
    if n_full < L:
        acc, l_i, m_i = _attn_fwd_step(q, acc, l_i, m_i, k_ptr, v_ptr, n_full + offs_n, offs_d, d_mask, L,
                                       qk_scale, s_kl, s_kd, s_vl, s_vd,
                                       MASKED=True, POS_SCALE=POS_SCALE, PRECISION=PRECISION)
    acc = acc / l_i[:, None]
    tl.store(o_ptr + offs_m[:, None] * s_ol + offs_d[None, :] * s_od,
             acc.to(o_ptr.dtype.element_ty), mask=m_mask[:, None] & d_mask[None, :])
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # natural-log log-sum-exp of the scaled scores
    tl.store(lse_ptr + bh.to(tl.int64) * L + offs_m, lse, mask=m_mask)


@jit
def _attn_bwd_preprocess_kernel(
    o_ptr, do_ptr, delta_ptr,
    H, L, D: tl.constexpr, NUM_M,
    s_ob, s_oh, s_ol, s_od,
    s_gb, s_gh, s_gl, s_gd,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid % NUM_M
    bh = pid // NUM_M
    b = (bh // H).to(tl.int64)
    hh = (bh % H).to(tl.int64)
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < L
    mask = m_mask[:, None] & (offs_d < D)[None, :]
    o = tl.load(o_ptr + b * s_ob + hh * s_oh + offs_m[:, None] * s_ol + offs_d[None, :] * s_od,
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b * s_gb + hh * s_gh + offs_m[:, None] * s_gl + offs_d[None, :] * s_gd,
                 mask=mask, other=0.0).to(tl.float32)
    tl.store(delta_ptr + bh.to(tl.int64) * L + offs_m, tl.sum(o * do, axis=1), mask=m_mask)


@jit
def _attn_bwd_dkdv_step(
    dk, dv, k, v, q_ptr, do_ptr, lse_ptr, delta_ptr, rows, offs_d, d_mask, L, qk_scale,
    s_ql, s_qd, s_gl, s_gd,
    MASKED: tl.constexpr, PRECISION: tl.constexpr,
):
    """One query block's contribution to the owned keys' (dk, dv); lse/delta point at this (b, h)."""
    if MASKED:
        m_mask = rows < L
        qt = tl.load(q_ptr + rows[None, :] * s_ql + offs_d[:, None] * s_qd,
                     mask=d_mask[:, None] & m_mask[None, :], other=0.0)  # (BLOCK_D, BLOCK_M)
        do = tl.load(do_ptr + rows[:, None] * s_gl + offs_d[None, :] * s_gd,
                     mask=m_mask[:, None] & d_mask[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
        lse2 = tl.load(lse_ptr + rows, mask=m_mask, other=0.0) * 1.4426950408889634
        di = tl.load(delta_ptr + rows, mask=m_mask, other=0.0)
    else:
        qt = tl.load(q_ptr + rows[None, :] * s_ql + offs_d[:, None] * s_qd, mask=d_mask[:, None], other=0.0)
        do = tl.load(do_ptr + rows[:, None] * s_gl + offs_d[None, :] * s_gd, mask=d_mask[None, :], other=0.0)
        lse2 = tl.load(lse_ptr + rows) * 1.4426950408889634
        di = tl.load(delta_ptr + rows)
    st = tl.dot(k, qt, input_precision=PRECISION)  # (BLOCK_N, BLOCK_M) = S^T / scale
    pt = tl.exp2(st * qk_scale - lse2[None, :])
    if MASKED:
        pt = tl.where(m_mask[None, :], pt, 0.0)
    dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
    dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (BLOCK_N, BLOCK_M)
    dst = pt * (dpt - di[None, :])
    dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=PRECISION)
    return dk, dv


@jit
def _attn_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    sm_scale, H, L, D: tl.constexpr, NUM_N,
    s_qb, s_qh, s_ql, s_qd,
    s_kb, s_kh, s_kl, s_kd,
    s_vb, s_vh, s_vl, s_vd,
    s_gb, s_gh, s_gl, s_gd,
    s_dkb, s_dkh, s_dkl, s_dkd,
    s_dvb, s_dvh, s_dvl, s_dvd,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_n = pid % NUM_N
    bh = pid // NUM_N
    b = (bh // H).to(tl.int64)
    hh = (bh % H).to(tl.int64)
    q_ptr += b * s_qb + hh * s_qh
    k_ptr += b * s_kb + hh * s_kh
    v_ptr += b * s_vb + hh * s_vh
    do_ptr += b * s_gb + hh * s_gh
    lse_ptr += bh.to(tl.int64) * L
    delta_ptr += bh.to(tl.int64) * L
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    n_mask = offs_n < L
    d_mask = offs_d < D
    kv_mask = n_mask[:, None] & d_mask[None, :]
    k = tl.load(k_ptr + offs_n[:, None] * s_kl + offs_d[None, :] * s_kd, mask=kv_mask, other=0.0)
    v = tl.load(v_ptr + offs_n[:, None] * s_vl + offs_d[None, :] * s_vd, mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    m_full = L // BLOCK_M * BLOCK_M
    for start_m in range(0, m_full, BLOCK_M):
        dk, dv = _attn_bwd_dkdv_step(dk, dv, k, v, q_ptr, do_ptr, lse_ptr, delta_ptr, start_m + offs_m, offs_d,
                                     d_mask, L, qk_scale, s_ql, s_qd, s_gl, s_gd,
                                     MASKED=False, PRECISION=PRECISION)
    if m_full < L:
        dk, dv = _attn_bwd_dkdv_step(dk, dv, k, v, q_ptr, do_ptr, lse_ptr, delta_ptr, m_full + offs_m, offs_d,
                                     d_mask, L, qk_scale, s_ql, s_qd, s_gl, s_gd,
                                     MASKED=True, PRECISION=PRECISION)
    dk = dk * sm_scale
    tl.store(dk_ptr + b * s_dkb + hh * s_dkh + offs_n[:, None] * s_dkl + offs_d[None, :] * s_dkd,
             dk.to(dk_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(dv_ptr + b * s_dvb + hh * s_dvh + offs_n[:, None] * s_dvl + offs_d[None, :] * s_dvd,
             dv.to(dv_ptr.dtype.element_ty), mask=kv_mask)


@jit
def _attn_bwd_dq_step(
    dq, q, do, lse2, di, k_ptr, v_ptr, cols, offs_d, d_mask, L, qk_scale,
    s_kl, s_kd, s_vl, s_vd,
    MASKED: tl.constexpr, PRECISION: tl.constexpr,
):
    """One key block's contribution to the owned queries' dq."""
    if MASKED:
        n_mask = cols < L
        t_mask = d_mask[:, None] & n_mask[None, :]
    else:
        t_mask = d_mask[:, None]
    kt = tl.load(k_ptr + cols[None, :] * s_kl + offs_d[:, None] * s_kd, mask=t_mask, other=0.0)
    vt = tl.load(v_ptr + cols[None, :] * s_vl + offs_d[:, None] * s_vd, mask=t_mask, other=0.0)
    s = tl.dot(q, kt, input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
    p = tl.exp2(s * qk_scale - lse2[:, None])
    if MASKED:
        # Not optional: past L the zero keys give p = exp2(-lse2), which may overflow.
        p = tl.where(n_mask[None, :], p, 0.0)
    dp = tl.dot(do, vt, input_precision=PRECISION)
    ds = p * (dp - di[:, None])
    dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION)
    return dq


@jit
def _attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    sm_scale, H, L, D: tl.constexpr, NUM_M,
    s_qb, s_qh, s_ql, s_qd,
    s_kb, s_kh, s_kl, s_kd,
    s_vb, s_vh, s_vl, s_vd,
    s_gb, s_gh, s_gl, s_gd,
    s_dqb, s_dqh, s_dql, s_dqd,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid % NUM_M
    bh = pid // NUM_M
    b = (bh // H).to(tl.int64)
    hh = (bh % H).to(tl.int64)
    k_ptr += b * s_kb + hh * s_kh
    v_ptr += b * s_vb + hh * s_vh
    row_ptr = bh.to(tl.int64) * L
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < L
    d_mask = offs_d < D
    q_mask = m_mask[:, None] & d_mask[None, :]
    q = tl.load(q_ptr + b * s_qb + hh * s_qh + offs_m[:, None] * s_ql + offs_d[None, :] * s_qd,
                mask=q_mask, other=0.0)
    do = tl.load(do_ptr + b * s_gb + hh * s_gh + offs_m[:, None] * s_gl + offs_d[None, :] * s_gd,
                 mask=q_mask, other=0.0)
    lse2 = tl.load(lse_ptr + row_ptr + offs_m, mask=m_mask, other=0.0) * 1.4426950408889634
    di = tl.load(delta_ptr + row_ptr + offs_m, mask=m_mask, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    n_full = L // BLOCK_N * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        dq = _attn_bwd_dq_step(dq, q, do, lse2, di, k_ptr, v_ptr, start_n + offs_n, offs_d, d_mask, L, qk_scale,
                               s_kl, s_kd, s_vl, s_vd, MASKED=False, PRECISION=PRECISION)
    if n_full < L:
        dq = _attn_bwd_dq_step(dq, q, do, lse2, di, k_ptr, v_ptr, n_full + offs_n, offs_d, d_mask, L, qk_scale,
                               s_kl, s_kd, s_vl, s_vd, MASKED=True, PRECISION=PRECISION)
    dq = dq * sm_scale
    tl.store(dq_ptr + b * s_dqb + hh * s_dqh + offs_m[:, None] * s_dql + offs_d[None, :] * s_dqd,
             dq.to(dq_ptr.dtype.element_ty), mask=q_mask)


@jit
def _attn_bwd_single_tile_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, do_ptr, lse_ptr, dq_ptr, dk_ptr, dv_ptr,
    sm_scale, H, L, D: tl.constexpr,
    s_qb, s_qh, s_ql, s_qd,
    s_kb, s_kh, s_kl, s_kd,
    s_vb, s_vh, s_vl, s_vd,
    s_ob, s_oh, s_ol, s_od,
    s_gb, s_gh, s_gl, s_gd,
    s_dqb, s_dqh, s_dql, s_dqd,
    s_dkb, s_dkh, s_dkl, s_dkd,
    s_dvb, s_dvh, s_dvl, s_dvd,
    BLOCK: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    # L <= BLOCK: one program owns a whole (batch, head), so it can write dQ, dK and dV itself.
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    hh = (bh % H).to(tl.int64)
    offs = tl.arange(0, BLOCK).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    l_mask = offs < L
    mask = l_mask[:, None] & (offs_d < D)[None, :]
    pos = offs[:, None]
    dd = offs_d[None, :]
    q = tl.load(q_ptr + b * s_qb + hh * s_qh + pos * s_ql + dd * s_qd, mask=mask, other=0.0)
    k = tl.load(k_ptr + b * s_kb + hh * s_kh + pos * s_kl + dd * s_kd, mask=mask, other=0.0)
    v = tl.load(v_ptr + b * s_vb + hh * s_vh + pos * s_vl + dd * s_vd, mask=mask, other=0.0)
    o = tl.load(o_ptr + b * s_ob + hh * s_oh + pos * s_ol + dd * s_od, mask=mask, other=0.0)
    do = tl.load(do_ptr + b * s_gb + hh * s_gh + pos * s_gl + dd * s_gd, mask=mask, other=0.0)
    di = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    lse2 = tl.load(lse_ptr + bh.to(tl.int64) * L + offs, mask=l_mask, other=0.0) * 1.4426950408889634
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # (BLOCK, BLOCK)
    p = tl.exp2(s * (sm_scale * 1.4426950408889634) - lse2[:, None])
    p = tl.where(l_mask[:, None] & l_mask[None, :], p, 0.0)
    dv = tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = (p * (dp - di[:, None])).to(q.dtype)
    dq = tl.dot(ds, k, input_precision=PRECISION) * sm_scale
    dk = tl.dot(tl.trans(ds), q, input_precision=PRECISION) * sm_scale
    tl.store(dq_ptr + b * s_dqb + hh * s_dqh + pos * s_dql + dd * s_dqd, dq.to(dq_ptr.dtype.element_ty), mask=mask)
    tl.store(dk_ptr + b * s_dkb + hh * s_dkh + pos * s_dkl + dd * s_dkd, dk.to(dk_ptr.dtype.element_ty), mask=mask)
    tl.store(dv_ptr + b * s_dvb + hh * s_dvh + pos * s_dvl + dd * s_dvd, dv.to(dv_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _config(seq_len: int, d: int) -> dict:
    """Fixed tiles by sequence length and head dim.

    BLOCK_D = max(16, next_pow2(D)): 16 is the smallest tl.dot operand dimension on a GPU, so
    D in {3, 4, 8} costs a 16-wide tile, not a 64-wide one. BLOCK_M x BLOCK_N is 64 x 64 for
    D <= 64 (the 978-column attention: an fp32 64 x 64 score tile is 32 registers per thread at
    4 warps) and 64 x 32 with 8 warps for D > 64, where the (BLOCK, D) accumulators dominate;
    both are capped at next_pow2(L) (>= 16), so L = 3 runs 16 x 16 tiles. num_stages = 3 is
    Triton's own default on NVIDIA GPUs, except 2 for D > 64: there fp32's tf32x3 operands of
    three pipeline stages fill the shared memory (the dK/dV kernel compiled for sm_90 by Triton
    3.6 asks for 229,888 of the 232,448 bytes a block may have; 196,864 with 2 stages).
    ``single`` says the whole sequence fits one tile, which selects the fused one-launch backward.
    """
    block_d = max(16, next_pow2(d))
    if block_d <= 64:
        block_m, block_n, num_warps, num_stages = 64, 64, 4, 3
    else:
        block_m, block_n, num_warps, num_stages = 64, 32, 8, 2
    cap = max(16, next_pow2(seq_len))
    block_m, block_n = min(block_m, cap), min(block_n, cap)
    if block_m * block_n <= 32 * 32:
        num_warps = 2 if block_d <= 64 else 4
    single = seq_len <= min(block_m, block_n)
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_D": block_d, "num_warps": num_warps,
            "num_stages": num_stages, "single": single}


def _forward(q, k, v, scale: float, cfg: dict, prec: str):
    bsz, nh, seq, d = q.shape
    o = torch.empty_like(q)  # keeps q's memory layout when it is dense (e.g. a transposed view)
    lse = torch.empty(bsz, nh, seq, dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse
    num_m = triton.cdiv(seq, cfg["BLOCK_M"])
    _attn_fwd_kernel[(bsz * nh * num_m,)](
        q, k, v, o, lse,
        scale, nh, seq, d, num_m,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"],
        POS_SCALE=scale >= 0, PRECISION=prec, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return o, lse


def _backward(do, q, k, v, o, lse, scale: float, cfg: dict, prec: str, need_q: bool, need_kv: bool):
    bsz, nh, seq, d = q.shape
    dq = torch.empty_like(q) if need_q else None
    dk = torch.empty_like(k) if need_kv else None
    dv = torch.empty_like(v) if need_kv else None
    if q.numel() == 0 or not (need_q or need_kv):
        return dq, dk, dv
    bd = cfg["BLOCK_D"]
    launch = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
    if cfg["single"]:
        # One kernel writes all three; buffers nobody asked for are computed and dropped.
        dq_, dk_, dv_ = (t if t is not None else torch.empty_like(x) for t, x in ((dq, q), (dk, k), (dv, v)))
        _attn_bwd_single_tile_kernel[(bsz * nh,)](
            q, k, v, o, do, lse, dq_, dk_, dv_,
            scale, nh, seq, d,
            *q.stride(), *k.stride(), *v.stride(), *o.stride(), *do.stride(),
            *dq_.stride(), *dk_.stride(), *dv_.stride(),
            BLOCK=cfg["BLOCK_M"], BLOCK_D=bd, PRECISION=prec, **launch,
        )
        return dq, dk, dv
    bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
    num_m = triton.cdiv(seq, bm)
    delta = torch.empty(bsz, nh, seq, dtype=torch.float32, device=q.device)
    _attn_bwd_preprocess_kernel[(bsz * nh * num_m,)](
        o, do, delta, nh, seq, d, num_m, *o.stride(), *do.stride(),
        BLOCK_M=bm, BLOCK_D=bd, **launch,
    )
    if need_kv:
        # Roles swapped: this kernel owns a block of bm keys (its dK/dV accumulators) and streams
        # query blocks of bn rows, as the dQ kernel owns bm queries and streams bn keys; the
        # owned side is the larger one when the tiles differ (D > 64), as in FlashAttention-2.
        _attn_bwd_dkdv_kernel[(bsz * nh * num_m,)](
            q, k, v, do, lse, delta, dk, dv,
            scale, nh, seq, d, num_m,
            *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
            BLOCK_M=bn, BLOCK_N=bm, BLOCK_D=bd, PRECISION=prec, **launch,
        )
    if need_q:
        _attn_bwd_dq_kernel[(bsz * nh * num_m,)](
            q, k, v, do, lse, delta, dq,
            scale, nh, seq, d, num_m,
            *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, PRECISION=prec, **launch,
        )
    return dq, dk, dv


class _AttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale: float, cfg: dict, prec: str):
        o, lse = _forward(q, k, v, scale, cfg, prec)
        ctx.scale = scale
        ctx.cfg = cfg
        ctx.prec = prec
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        need_q = ctx.needs_input_grad[0]
        need_kv = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        dq, dk, dv = _backward(do, q, k, v, o, lse, ctx.scale, ctx.cfg, ctx.prec, need_q, need_kv)
        return (
            dq,
            dk if ctx.needs_input_grad[1] else None,
            dv if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


# attention_triton's overrides: config key, smallest and largest value (None: no bound), and
# whether the value must be a power of two (tile shapes and warp counts are; stages are not).
_OVERRIDES = {
    "block_m": ("BLOCK_M", 16, None, True),
    "block_n": ("BLOCK_N", 16, None, True),
    "num_warps": ("num_warps", 1, 16, True),
    "num_stages": ("num_stages", 1, 8, False),
}


def attention_triton(
    q, k, v, scale=None, *,
    block_m: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    fp32_precision: str | None = None,
):
    """The Triton path of :func:`attention` (inputs assumed validated).

    ``block_m`` / ``block_n`` (powers of two >= 16), ``num_warps`` (a power of two, 1 to 16) and
    ``num_stages`` (1 to 8, the software-pipelining depth of the streaming loops) override the
    entries of :func:`_config`; results do not depend on them beyond fp32 rounding of the sums
    (the tiling changes the summation order), and one setting gives bit-identical results run to
    run. They exist so tests can run the multi-block kernels and the one-tile backward on small
    sequences, and so ``benchmarks/sweep_attention.py`` can time the candidates.
    ``fp32_precision`` ("tf32x3", "ieee" or "tf32") overrides ``_FP32_PRECISION`` for fp32
    inputs.
    """
    if not HAS_TRITON:
        raise RuntimeError("attention(backend='triton') needs the triton package; use backend='reference'")
    if q.device.type != "cuda" and not interpreted(_attn_fwd_kernel):
        raise RuntimeError(
            "attention(backend='triton') on CPU tensors needs TRITON_INTERPRET=1 set before triton"
            " is imported (or use backend='reference' / 'auto')"
        )
    if q.dtype not in _TRITON_DTYPES:
        raise ValueError(
            f"attention(backend='triton') supports float32, bfloat16 and float16, got {q.dtype};"
            " use backend='reference' (or 'auto')"
        )
    precision = _FP32_PRECISION if fp32_precision is None else fp32_precision
    if precision not in _FP32_PRECISIONS:
        raise ValueError(f"attention: fp32_precision must be one of {_FP32_PRECISIONS}, got {fp32_precision!r}")
    seq, d = q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    cfg = _config(seq, d)
    given = {"block_m": block_m, "block_n": block_n, "num_warps": num_warps, "num_stages": num_stages}
    given = {name: val for name, val in given.items() if val is not None}
    if given:
        cfg = dict(cfg)
        for name, val in given.items():
            key, lo, hi, pow2 = _OVERRIDES[name]
            if (
                isinstance(val, bool) or not isinstance(val, numbers.Integral) or val < lo
                or (hi is not None and val > hi) or (pow2 and val & (val - 1))
            ):
                what = "a power of two" if pow2 else "an integer"
                bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
                raise ValueError(f"attention: {name} must be {what} {bound}, got {val!r}")
            cfg[key] = int(val)
        cfg["single"] = seq <= min(cfg["BLOCK_M"], cfg["BLOCK_N"])
    # Half-precision dots ignore the setting; one value keeps a single compiled variant.
    prec = precision if q.dtype == torch.float32 else "ieee"
    return _AttentionTriton.apply(q, k, v, scale, cfg, prec)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def _validate(q, k, v, scale) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"attention: {name} must be a torch.Tensor, got {type(t).__name__}")
    if q.dim() != 4:
        raise ValueError(f"attention: q must be 4-D (B, H, L, D), got {q.dim()}-D shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            "attention: q, k and v must have the same shape (B, H, L, D); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not q.is_floating_point():
        raise ValueError(f"attention: q, k, v must be floating tensors, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"attention: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"attention: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    d = q.shape[3]
    if not 1 <= d <= _MAX_D:
        raise ValueError(f"attention: head dim D must be between 1 and {_MAX_D}, got D={d}")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale)
    ):
        raise ValueError(f"attention: scale must be a finite number or None, got {scale!r}")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Scaled-dot-product attention without masking or dropout, over the last two dims.

    Args:
        q, k, v: (B, H, L, D) each, same shape, dtype and device; any L (978, 3, ...) and
            1 <= D <= 128. Any strides (e.g. a transposed (B, L, H, D) view).
        scale: multiplier of the scores; default ``1 / sqrt(D)``.
        backend: ``"auto"`` (CUDA fp32/bf16/fp16 tensors with Triton installed → Triton, else
            reference), ``"triton"`` (forced; CPU tensors need ``TRITON_INTERPRET=1``),
            ``"reference"`` (``torch.nn.functional.scaled_dot_product_attention``).

    Returns:
        out (B, H, L, D) in the input dtype::

            out = softmax(q @ k^T * scale, dim=-1) @ v

        Gradients flow to q, k and v (the Triton path is once-differentiable). The Triton output
        (and gradients) keep the memory layout of q (of k, v) when it is dense.
    """
    if backend not in ("auto", "triton", "reference"):
        raise ValueError(f"attention: backend must be 'auto', 'triton' or 'reference', got {backend!r}")
    _validate(q, k, v, scale)
    if backend == "auto":
        use = q.device.type == "cuda" and HAS_TRITON and q.dtype in _TRITON_DTYPES
        backend = "triton" if use else "reference"
    if backend == "triton":
        return attention_triton(q, k, v, scale)
    return attention_reference(q, k, v, scale)
