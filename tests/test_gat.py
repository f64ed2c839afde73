"""tnfast.kernels.gat_aggregate: Triton (interpreted on CPU) vs fast reference vs naive oracle.

Triton runs under TRITON_INTERPRET=1 (set in conftest.py) on graphs of at most a few hundred
nodes: the interpreter costs milliseconds per program. bf16 needs a real GPU.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from tnfast.data.csr import build_csr
from tnfast.kernels import (
    clear_graph_cache,
    gat_aggregate,
    gat_aggregate_naive,
    gat_aggregate_reference,
    stack_multiplex,
)
from tnfast.kernels import gat as gat_mod
from tnfast.kernels.csr import graph_plan

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
needs_triton = pytest.mark.skipif(
    not gat_mod.HAS_TRITON or (not CUDA and not gat_mod.interpreted(gat_mod._gat_fwd_kernel)),
    reason="needs triton with a GPU or TRITON_INTERPRET=1",
)
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------
# graphs
# ------------------------------------------------------------------------------------------
def sym_graph(n, n_pairs, seed, *, hub_degree=0, empty=0, weighted=True, indptr_dtype=torch.int64):
    """Undirected duplicate-free CSR (as the bundle stores it); node 0 is a hub of the given
    degree; the last `empty` nodes have no edges."""
    rng = np.random.default_rng(seed)
    live = n - empty
    src = rng.integers(0, live, n_pairs)
    dst = rng.integers(0, live, n_pairs)
    if hub_degree:
        nb = rng.choice(np.arange(1, live), size=hub_degree, replace=False)
        src, dst = np.concatenate([src, np.zeros(hub_degree, np.int64)]), np.concatenate([dst, nb])
    w = rng.uniform(0.2, 3.0, len(src)).astype(np.float32)
    c = build_csr(src, dst, n, w)
    return (torch.from_numpy(c.indptr).to(indptr_dtype), torch.from_numpy(c.indices),
            torch.from_numpy(c.weights) if weighted else None)


def directed_graph(n, max_deg, seed, *, indptr_dtype=torch.int64, source_hub=False):
    """Non-symmetric CSR by destination, random in-degrees in [0, max_deg], no duplicates.
    With ``source_hub``, node 0 is a source of almost every row (a hub of the reverse CSR only)."""
    rng = np.random.default_rng(seed)
    deg = rng.integers(0, max_deg + 1, n)
    rows = [np.sort(rng.choice(n, size=k, replace=False)) for k in deg]
    if source_hub:
        rows = [np.union1d(r, [0]) if i % 8 else r for i, r in enumerate(rows)]
        deg = np.array([len(r) for r in rows])
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    idx = np.concatenate(rows).astype(np.int32)
    w = rng.uniform(0.5, 2.0, len(idx)).astype(np.float32)
    return torch.from_numpy(indptr).to(indptr_dtype), torch.from_numpy(idx), torch.from_numpy(w)


def multiplex_graph(n, layers, seed, indptr_dtype=torch.int64):
    csrs = []
    for li in range(layers):
        rng = np.random.default_rng(seed + li)
        k = rng.integers(n, 4 * n)
        csrs.append(build_csr(rng.integers(0, n, k), rng.integers(0, n, k), n, rng.uniform(0.5, 2, k)))
    ip, ix, w = stack_multiplex([(c.indptr, c.indices, c.weights) for c in csrs])
    return torch.from_numpy(ip).to(indptr_dtype), torch.from_numpy(ix), torch.from_numpy(w)


def inputs(m, nh, d, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, nh, d, generator=g, dtype=torch.float64)
    a = 1.5 * torch.randn(m, nh, generator=g, dtype=torch.float64)
    b = 1.5 * torch.randn(m, nh, generator=g, dtype=torch.float64)
    gout = torch.randn(m, nh, d, generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (h, a, b, gout)]


def run(fn, h, a, b, ip, ix, w, gout, **kw):
    h, a, b = (t.detach().clone().requires_grad_(True) for t in (h, a, b))
    out = fn(h, a, b, ip, ix, w, **kw)
    out.backward(gout)
    return out.detach(), h.grad, a.grad, b.grad


def triton_fn(**kw):
    return lambda *args: gat_mod.gat_aggregate_triton(*args, **kw)


def naive64(h, a, b, ip, ix, w, gout):
    return run(gat_aggregate_naive, h.double(), a.double(), b.double(), ip, ix,
               None if w is None else w.double(), gout.double())


def assert_close(got, want, tol, what=""):
    names = ("out", "d_h", "d_a_src", "d_a_dst")
    for name, x, y in zip(names, got, want):
        assert x.shape == y.shape, (what, name)
        err = rel_rms(x, y)
        assert err <= tol, f"{what} {name}: relative RMS {err:.3g} > {tol:g}"


# ------------------------------------------------------------------------------------------
# the fast reference against the naive oracle (cheap: no interpreter)
# ------------------------------------------------------------------------------------------
REF_GRAPHS = {
    "sym_hub_empty": lambda dt: sym_graph(70, 120, 1, hub_degree=40, empty=6, indptr_dtype=dt),
    "directed": lambda dt: directed_graph(50, 9, 2, indptr_dtype=dt),
    "multiplex": lambda dt: multiplex_graph(25, 3, 3, indptr_dtype=dt),
}


@pytest.mark.parametrize("graph", sorted(REF_GRAPHS))
@pytest.mark.parametrize("nh,d", [(1, 3), (4, 24), (2, 40)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("indptr_dtype", [torch.int32, torch.int64])
def test_reference_matches_naive(graph, nh, d, weighted, indptr_dtype):
    ip, ix, w = REF_GRAPHS[graph](indptr_dtype)
    w = w if weighted else None
    m = ip.numel() - 1
    for dtype in (torch.float64, torch.float32):
        h, a, b, gout = inputs(m, nh, d, dtype, seed=nh * 100 + d)
        got = run(gat_aggregate_reference, h, a, b, ip, ix, None if w is None else w.to(dtype), gout)
        assert_close(got, naive64(h, a, b, ip, ix, w, gout), TOL[dtype], f"{graph} {dtype}")
        assert got[0].dtype == dtype and got[1].dtype == dtype


def test_reference_empty_rows_are_zero_and_duplicates_count():
    ip, ix, w = sym_graph(40, 60, 5, empty=5)
    h, a, b, _ = inputs(40, 2, 7)
    out = gat_aggregate(h, a, b, ip, ix, w)
    assert torch.all(out[-5:] == 0)
    # a duplicated edge counts twice: same as weight 2 on one copy
    ip2 = torch.tensor([0, 3, 3])
    ix2 = torch.tensor([1, 1, 0], dtype=torch.int32)
    h2, a2, b2, _ = inputs(2, 1, 3, torch.float64)
    dup = gat_aggregate(h2, a2, b2, ip2, ix2)
    one = gat_aggregate(h2, a2, b2, torch.tensor([0, 2, 2]), torch.tensor([1, 0], dtype=torch.int32),
                        torch.tensor([2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(dup, one)
    torch.testing.assert_close(dup, gat_aggregate_naive(h2, a2, b2, ip2, ix2))


@pytest.mark.parametrize("weighted", [False, True])
def test_reference_gradcheck(weighted):
    ip, ix, w = sym_graph(12, 18, 7, hub_degree=6, empty=2)
    h, a, b, _ = inputs(12, 2, 3, torch.float64, seed=3)
    w = w.double() if weighted else None
    fn = lambda h, a, b: gat_aggregate_reference(h, a, b, ip, ix, w, 0.1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(t.requires_grad_() for t in (h, a, b)))


def test_reference_only_some_grads():
    ip, ix, w = sym_graph(30, 50, 8)
    h, a, b, gout = inputs(30, 2, 5, torch.float64)
    a.requires_grad_()
    out = gat_aggregate_reference(h, a, b, ip, ix, w)
    (ga,) = torch.autograd.grad(out, a, gout)
    a2 = a.detach().requires_grad_()
    (ga2,) = torch.autograd.grad(gat_aggregate_naive(h, a2, b, ip, ix, w.double()), a2, gout)
    assert rel_rms(ga, ga2) < 1e-10


# ------------------------------------------------------------------------------------------
# Triton (interpreted on CPU) against both references
# ------------------------------------------------------------------------------------------
TRITON_CASES = {
    # hub row of degree > 40: several blocks of 8 and several pieces of 16; 6 empty rows
    "hub_split": dict(graph=lambda: sym_graph(56, 70, 11, hub_degree=44, empty=6),
                      nh=4, d=24, kw=dict(block_e=8, split_threshold=16)),
    # hub longer than one block but below the split threshold; int32 indptr; no weights
    "hub_blocks": dict(graph=lambda: sym_graph(48, 50, 12, hub_degree=30, weighted=False,
                                               indptr_dtype=torch.int32),
                       nh=1, d=40, kw=dict(block_e=8, split_threshold=64)),
    # non-symmetric graph: reverse CSR differs from the forward one; D=3; default config
    "directed": dict(graph=lambda: directed_graph(40, 12, 13), nh=4, d=3, kw={}),
    # a source hub: only the reverse CSR (d_h, d_a_src) takes the split path
    "source_hub": dict(graph=lambda: directed_graph(40, 6, 23, source_hub=True), nh=2, d=5,
                       kw=dict(block_e=8, split_threshold=16)),
    # three stacked layers; split path in both the forward and the reverse CSR
    "multiplex": dict(graph=lambda: multiplex_graph(24, 3, 14, indptr_dtype=torch.int32),
                      nh=1, d=24, kw=dict(block_e=4, split_threshold=6)),
}


@needs_triton
@pytest.mark.parametrize("case", sorted(TRITON_CASES))
def test_triton_matches_references(case):
    spec = TRITON_CASES[case]
    ip, ix, w = (None if t is None else t.to(DEV) for t in spec["graph"]())
    m = ip.numel() - 1
    h, a, b, gout = inputs(m, spec["nh"], spec["d"], seed=len(case), device=DEV)
    got = run(triton_fn(**spec["kw"]), h, a, b, ip, ix, w, gout)
    ref = run(gat_aggregate_reference, h, a, b, ip, ix, w, gout)
    assert_close(got, ref, TOL[torch.float32], f"{case} vs reference")
    assert_close(got, naive64(h, a, b, ip, ix, w, gout), TOL[torch.float32], f"{case} vs naive")
    # the log-sum-exp saved for the backward (merged across pieces for split rows)
    _, lse = gat_mod.gat_aggregate_triton(h, a, b, ip, ix, w, return_lse=True, **spec["kw"])
    _, lse_ref = gat_aggregate_reference(h, a, b, ip, ix, w, return_lse=True)
    nonempty = ip.diff() > 0
    assert rel_rms(lse[nonempty], lse_ref[nonempty]) < 1e-6


@needs_triton
def test_triton_strided_inputs_and_expanded_grad():
    # hub of degree >= 36 cut into pieces of 2: more pieces than one merge step (BLOCK_P) takes
    ip, ix, w = (t.to(DEV) for t in sym_graph(40, 30, 15, hub_degree=36))
    assert int(ip.diff().max()) > 2 * gat_mod.BLOCK_P
    hh, a, b, _ = inputs(40, 2, 10, device=DEV)
    h_hm = hh.permute(1, 0, 2).contiguous().requires_grad_()  # head-major storage
    a_t = a.t().contiguous().requires_grad_()
    b2 = b.clone().requires_grad_()
    out = gat_mod.gat_aggregate_triton(h_hm.permute(1, 0, 2), a_t.t(), b2, ip, ix, w,
                                       block_e=8, split_threshold=2)
    out.sum().backward()  # d_out is an expanded (stride-0) tensor
    hr, ar, br = (t.detach().clone().requires_grad_() for t in (hh, a, b))
    gat_aggregate_reference(hr, ar, br, ip, ix, w).sum().backward()
    assert rel_rms(h_hm.grad.permute(1, 0, 2), hr.grad) < TOL[torch.float32]
    assert rel_rms(a_t.grad.t(), ar.grad) < TOL[torch.float32]
    assert rel_rms(b2.grad, br.grad) < TOL[torch.float32]
    assert rel_rms(out, gat_aggregate_reference(hh, a, b, ip, ix, w)) < TOL[torch.float32]


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_backward_is_deterministic(backend):
    dev = DEV if backend == "triton" else "cpu"
    ip, ix, w = (t.to(dev) for t in sym_graph(40, 70, 16, hub_degree=30, empty=3))
    h, a, b, gout = inputs(40, 2, 6, device=dev)
    fn = triton_fn(block_e=4, split_threshold=8) if backend == "triton" else gat_aggregate_reference
    r1 = run(fn, h, a, b, ip, ix, w, gout)
    r2 = run(fn, h, a, b, ip, ix, w, gout)
    for x, y in zip(r1, r2):
        assert torch.equal(x, y)


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_empty_graphs(backend):
    dev = DEV if backend == "triton" else "cpu"
    for m in (5, 0):
        ip = torch.zeros(m + 1, dtype=torch.int64, device=dev)
        ix = torch.zeros(0, dtype=torch.int32, device=dev)
        h, a, b, gout = inputs(m, 3, 5, device=dev)
        out, gh, ga, gb = run(gat_aggregate, h, a, b, ip, ix, None, gout, backend=backend)
        assert out.shape == (m, 3, 5) and torch.all(out == 0)
        for g, t in ((gh, h), (ga, a), (gb, b)):
            assert g is not None and g.shape == t.shape and torch.all(g == 0)


def test_auto_backend_on_cpu_is_the_reference():
    ip, ix, w = sym_graph(30, 40, 17)
    h, a, b, _ = inputs(30, 2, 4)
    assert torch.equal(gat_aggregate(h, a, b, ip, ix, w), gat_aggregate_reference(h, a, b, ip, ix, w))


@pytest.mark.skipif(not CUDA, reason="the auto backend's choice for CUDA tensors")
def test_auto_sends_float64_on_cuda_to_the_reference():
    """The Triton kernels accumulate in fp32: float64 would lose its precision there."""
    ip, ix, w = (t.cuda() for t in sym_graph(30, 40, 17))
    h, a, b, _ = inputs(30, 2, 4, torch.float64, device="cuda")
    assert torch.equal(gat_aggregate(h, a, b, ip, ix, w), gat_aggregate_reference(h, a, b, ip, ix, w))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    if not gat_mod.HAS_TRITON:
        pytest.skip("triton not installed")
    monkeypatch.setattr(gat_mod, "interpreted", lambda kernel: False)
    ip, ix, w = sym_graph(10, 10, 18)
    h, a, b, _ = inputs(10, 1, 4)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        gat_aggregate(h, a, b, ip, ix, w, backend="triton")


@pytest.mark.skipif(not CUDA, reason="bf16 is tested on GPU only (the interpreter has no bf16 arithmetic)")
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_bf16_cuda(backend):
    ip, ix, w = (t.cuda() for t in sym_graph(300, 1500, 19, hub_degree=200, empty=4))
    h, a, b, gout = inputs(300, 4, 40, torch.bfloat16, device="cuda")
    got = run(gat_aggregate, h, a, b, ip, ix, w, gout, backend=backend)
    assert all(t.dtype == torch.bfloat16 for t in got)
    # oracle: the same bf16 values, computed in float64
    assert_close(got, naive64(h, a, b, ip, ix, w, gout), TOL[torch.bfloat16], "bf16")


# ------------------------------------------------------------------------------------------
# validation, caching, stack_multiplex, import without triton
# ------------------------------------------------------------------------------------------
def test_bad_inputs_raise_value_error():
    ip, ix, w = sym_graph(10, 15, 20)
    h, a, b, _ = inputs(10, 2, 4)
    bad = [
        dict(h=h[0]),  # not 3-D
        dict(h=h.long()),  # not floating
        dict(a_src=a[:, :1]),  # wrong H
        dict(a_dst=b.double()),  # dtype mismatch
        dict(indptr=ip[:-1]),  # wrong length
        dict(indptr=ip.float()),  # wrong dtype
        dict(indices=ix.float()),
        dict(indices=ix[None]),
        dict(edge_weight=w[:-1]),
        dict(edge_weight=-w),
        dict(edge_weight=torch.where(torch.arange(len(w)) == 1, torch.inf, w)),  # log inf: NaN rows
        dict(indices=torch.full_like(ix, 10)),  # out of range
        dict(indices=ix[:-1]),  # indptr[-1] != E
        dict(backend="cuda"),
        dict(negative_slope=float("nan")),
    ]
    base = dict(h=h, a_src=a, a_dst=b, indptr=ip, indices=ix, edge_weight=w)
    for change in bad:
        kwargs = {**base, **change}
        if "edge_weight" not in change and kwargs["indices"].numel() != w.numel():
            kwargs["edge_weight"] = None
        with pytest.raises(ValueError):
            gat_aggregate(**kwargs)
    with pytest.raises(ValueError, match="non-decreasing"):
        gat_aggregate(h, a, b, torch.tensor([0, 3, 2, 4, 4, 4, 4, 4, 4, 4, 4]), ix[:4])


def test_edge_weights_are_checked_again_after_an_in_place_change():
    """The weight check runs once per weight tensor (a GPU sync), so a tensor that passed and is
    then edited in place must be checked again."""
    ip, ix, w = sym_graph(20, 30, 23)
    h, a, b, _ = inputs(20, 2, 4)
    w = w.clone()
    gat_aggregate(h, a, b, ip, ix, w)
    w[3] = 0.0
    with pytest.raises(ValueError, match="finite and > 0"):
        gat_aggregate(h, a, b, ip, ix, w)
    clear_graph_cache()


def test_graph_plan_cache():
    ip, ix, _ = sym_graph(20, 30, 21)
    p1 = graph_plan(ip, ix)
    assert graph_plan(ip, ix) is p1
    assert graph_plan(ip.clone(), ix) is not p1
    ix2 = ix.clone()
    p2 = graph_plan(ip, ix2)
    ix2[0] = (int(ix2[0]) + 1) % 20  # in-place edit: the cached plan must not be reused
    assert graph_plan(ip, ix2) is not p2
    rev = p1.reverse
    # the reverse CSR lists, per source, the forward edge ids of its out-edges
    src_of = ix[rev.perm.long()]
    assert torch.equal(src_of, torch.repeat_interleave(torch.arange(20, dtype=torch.int32), rev.indptr.diff()))
    clear_graph_cache()


def test_stack_multiplex():
    rng = np.random.default_rng(22)
    c1 = build_csr(rng.integers(0, 6, 9), rng.integers(0, 6, 9), 6, rng.uniform(1, 2, 9))
    c2 = build_csr(rng.integers(0, 6, 7), rng.integers(0, 6, 7), 6)
    ip, ix, w = stack_multiplex([c1, (c2.indptr, c2.indices)])
    assert isinstance(ip, np.ndarray) and ip.dtype == np.int64 and ix.dtype == np.int32
    assert len(ip) == 13 and ip[-1] == c1.nnz + c2.nnz
    np.testing.assert_array_equal(ix[: c1.nnz], c1.indices)
    np.testing.assert_array_equal(ix[c1.nnz:], c2.indices + 6)
    np.testing.assert_array_equal(w, np.concatenate([c1.weights, np.ones(c2.nnz, np.float32)]))
    dense = np.zeros((12, 12))
    rows = np.repeat(np.arange(12), np.diff(ip))
    dense[rows, ix] = 1
    assert dense[:6, 6:].sum() == 0 and dense[6:, :6].sum() == 0  # block diagonal
    tip, tix, tw = stack_multiplex([(torch.from_numpy(c.indptr), torch.from_numpy(c.indices)) for c in (c1, c2)])
    assert isinstance(tip, torch.Tensor) and tw is None and torch.equal(tix, torch.from_numpy(ix))
    with pytest.raises(ValueError):
        stack_multiplex([])
    with pytest.raises(ValueError):
        stack_multiplex([c1, build_csr(np.array([0]), np.array([1]), 7)])
    with pytest.raises(ValueError):
        stack_multiplex([(c1.indptr, c1.indices + 6)])


def test_import_and_reference_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None; sys.modules['triton.language'] = None\n"
        "import torch; import tnfast.kernels as k\n"
        "assert not k.HAS_TRITON\n"
        "ip = torch.tensor([0, 1, 2]); ix = torch.tensor([1, 0], dtype=torch.int32)\n"
        "h = torch.randn(2, 1, 3, requires_grad=True); a = torch.zeros(2, 1)\n"
        "out = k.gat_aggregate(h, a, a, ip, ix); out.sum().backward()\n"
        "assert torch.allclose(out[0], h[1].detach()) and h.grad is not None\n"
        "try:\n    k.gat_aggregate(h, a, a, ip, ix, backend='triton')\nexcept RuntimeError as e:\n"
        "    assert 'triton' in str(e)\nelse:\n    raise SystemExit('no error')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
