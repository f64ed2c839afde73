"""tnfast.kernels.attention: Triton (interpreted on CPU) vs the SDPA reference vs a naive oracle.

Every comparison is a relative RMS error, ||a - b|| / ||b||, against the matmul-softmax-matmul
oracle evaluated in float64 on the same (rounded) inputs. bf16 runs only on CUDA: the Triton
interpreter does not support bf16 ``tl.dot`` (it multiplies the raw bit patterns); fp16 covers
the half-precision code path here.
"""

import importlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tnfast.kernels import attention, attention_naive, attention_reference

# The module (``tnfast.kernels.attention`` as an attribute is the function, not the module).
attn_module = importlib.import_module("tnfast.kernels.attention")

CUDA = torch.cuda.is_available()
# fp32 holds 1e-5 on the GPU too, also with fp32_precision="tf32x3": emulating its operand
# splitting (round-to-nearest tf32 heads, truncated tf32 remainders) on the GenSAN shapes gives
# rel RMS 1e-7 to 9e-7 against float64, at most 35% above plain fp32 dots.
TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make(shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype) for _ in range(3)]


def run(fn, qkv, do, **kw):
    """Forward + backward of ``fn``; returns (out, dq, dk, dv)."""
    leaves = [t.detach().clone().requires_grad_() for t in qkv]
    out = fn(*leaves, **kw)
    out.backward(do)
    return (out, *(t.grad for t in leaves))


def oracle(qkv, do, scale=None):
    return run(attention_naive, [t.double() for t in qkv], do.double(), scale=scale)


def check(got, want, tol, what=""):
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert a.dtype == got[0].dtype
        err = rel_rms(a, b)
        assert err <= tol, f"{what} {name}: rel RMS {err:.2e} > {tol:.0e}"


# (B, H) cycles through the spec's {1, 2} x {1, 2} so every L x D cell runs one combination.
BH = [(1, 1), (2, 2), (1, 2), (2, 1)]
CASES = [(L, D, *BH[i % 4]) for i, (L, D) in enumerate((L, D) for L in (3, 37, 130) for D in (3, 16, 40))]


@pytest.mark.parametrize("L,D,B,H", CASES)
def test_triton_and_reference_match_oracle(L, D, B, H):
    qkv = make((B, H, L, D), seed=L * 1000 + D)
    do = make((B, H, L, D), seed=7)[0]
    want = oracle(qkv, do)
    got_t = run(attention, qkv, do, backend="triton")
    got_r = run(attention, qkv, do, backend="reference")
    assert got_t[0].shape == (B, H, L, D) and got_t[0].dtype == torch.float32
    check(got_t, want, TOL[torch.float32], "triton")
    check(got_r, want, TOL[torch.float32], "reference")


@pytest.mark.parametrize(
    "L,D,block_m,block_n,extra",
    [
        (37, 8, 16, 32, {}),  # unequal tiles, ragged tail in both loops
        (50, 5, 32, 16, {}),
        (64, 16, 16, 16, {}),  # L an exact multiple of the tile: no masked tail
        (20, 4, 32, 32, {}),  # L < tile: the one-tile fused backward with a ragged tile
        # Full blocks plus a tail (100 = 64 + 36, = 3 x 32 + 4), BLOCK_M != BLOCK_N, both roles of
        # the larger tile, launch settings and the other fp32 precision passed through.
        (100, 8, 32, 64, {"num_warps": 8, "num_stages": 1}),
        (100, 3, 64, 32, {"num_warps": 2, "num_stages": 2, "fp32_precision": "ieee"}),
        # A negative scale: the full blocks' row max is then the min of the raw scores.
        (70, 16, 16, 32, {"num_warps": 1, "scale": -0.7}),
    ],
)
def test_forced_configs(L, D, block_m, block_n, extra):
    qkv = make((1, 2, L, D), seed=L + D)
    do = make((1, 2, L, D), seed=3)[0]
    got = run(attn_module.attention_triton, qkv, do, block_m=block_m, block_n=block_n, **extra)
    check(got, oracle(qkv, do, scale=extra.get("scale")), TOL[torch.float32], f"{block_m}x{block_n} {extra}")


def test_zero_scale_is_uniform_attention():
    # scale 0: every probability is 1/L (a -inf mask times 0 would be NaN: the tail scales first).
    qkv = make((1, 2, 100, 8), seed=13)
    do = make((1, 2, 100, 8), seed=14)[0]
    out, dq, dk, dv = run(attn_module.attention_triton, qkv, do, scale=0.0, block_m=32, block_n=64)
    assert rel_rms(out, qkv[2].mean(dim=2, keepdim=True).expand_as(out)) <= TOL[torch.float32]
    assert rel_rms(dv, do.mean(dim=2, keepdim=True).expand_as(dv)) <= TOL[torch.float32]
    assert dq.abs().max() == 0 and dk.abs().max() == 0


def test_fp32_precision_is_valid_for_this_triton():
    # Every fp32 setting the op offers (ieee by default, tf32x3, tf32) must be accepted by the
    # installed Triton's CUDA backend (the interpreter ignores the setting, so nothing else here would).
    assert attn_module._FP32_PRECISION in attn_module._FP32_PRECISIONS
    compiler = pytest.importorskip("triton.backends.nvidia.compiler")
    assert set(attn_module._FP32_PRECISIONS) <= set(compiler.CUDAOptions.allowed_dot_input_precisions)


@pytest.mark.parametrize("L", [3, 37, 130])
def test_wide_head_dim_128(L):
    qkv = make((1, 1, L, 128), seed=L)
    do = make((1, 1, L, 128), seed=5)[0]
    check(run(attention, qkv, do, backend="triton"), oracle(qkv, do), TOL[torch.float32], "D=128")


def test_non_contiguous_inputs_and_grad():
    B, L, H, D = 2, 37, 2, 8
    g = torch.Generator().manual_seed(1)
    base_q = torch.randn(B, L, H, D, generator=g)
    q = base_q.transpose(1, 2)  # (B, H, L, D) view of a (B, L, H, D) buffer
    k = torch.randn(B, H, L, 2 * D, generator=g)[..., ::2]  # strided along D
    v = torch.randn(B, H, D, L, generator=g).transpose(2, 3)  # L and D strides swapped
    do = torch.randn(B, L, H, D, generator=g).transpose(1, 2)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous() or do.is_contiguous())
    got = run(attention, (q, k, v), do, backend="triton")
    check(got, oracle((q, k, v), do), TOL[torch.float32], "non-contiguous")
    assert got[0].stride() == q.stride()  # the output keeps q's (B, L, H, D) layout


def test_broadcast_grad_output():
    # out.sum().backward() hands the backward a stride-0 (expanded) gradient.
    qkv = make((1, 2, 37, 4), seed=8)
    leaves = [t.clone().requires_grad_() for t in qkv]
    out = attention(*leaves, backend="triton")
    out.sum().backward()
    want = oracle(qkv, torch.ones(out.shape))
    check((out, *(t.grad for t in leaves)), want, TOL[torch.float32], "sum backward")


@pytest.mark.parametrize("scale", [0.3, 2.0, 1, -0.7])
@pytest.mark.parametrize("L", [3, 37])
def test_custom_scale(scale, L):
    qkv = make((1, 2, L, 16), seed=11)
    do = make((1, 2, L, 16), seed=12)[0]
    want = oracle(qkv, do, scale=scale)
    check(run(attention, qkv, do, scale=scale, backend="triton"), want, TOL[torch.float32], "triton scale")
    check(run(attention, qkv, do, scale=scale, backend="reference"), want, TOL[torch.float32], "ref scale")
    # The default really is 1/sqrt(D).
    d = run(attention, qkv, do, backend="reference")[0]
    e = run(attention, qkv, do, scale=1 / math.sqrt(16), backend="reference")[0]
    torch.testing.assert_close(d, e)


def test_reference_gradcheck_float64():
    q, k, v = (t.requires_grad_() for t in make((1, 2, 5, 3), dtype=torch.float64, seed=2))
    fn = lambda a, b, c: attention(a, b, c, scale=0.7, backend="reference")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))
    assert torch.autograd.gradcheck(attention_naive, (q, k, v))


@pytest.mark.parametrize("L", [3, 130])
def test_backward_is_deterministic(L):
    qkv = make((2, 2, L, 16), seed=4)
    do = make((2, 2, L, 16), seed=6)[0]
    a = run(attention, qkv, do, backend="triton")
    b = run(attention, qkv, do, backend="triton")
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("L", [3, 130])
@pytest.mark.parametrize("which", [(True, False, False), (False, True, False), (False, False, True)])
def test_partial_requires_grad(L, which):
    qkv = make((1, 2, L, 8), seed=9)
    do = make((1, 2, L, 8), seed=10)[0]
    want = oracle(qkv, do)
    leaves = [t.clone().requires_grad_(r) for t, r in zip(qkv, which)]
    attention(*leaves, backend="triton").backward(do)
    for t, w, r in zip(leaves, want[1:], which):
        if r:
            assert rel_rms(t.grad, w) <= TOL[torch.float32]
        else:
            assert t.grad is None


@pytest.mark.parametrize("shape", [(0, 2, 5, 4), (1, 2, 0, 4), (2, 0, 3, 4)])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_empty_inputs(shape, backend):
    q, k, v = (torch.zeros(shape, requires_grad=True) for _ in range(3))
    out = attention(q, k, v, backend=backend)
    assert out.shape == shape
    out.sum().backward()
    assert q.grad.shape == shape


def test_fp16_under_interpreter():
    # Exercises the half-precision casts (p and dS rounded to the storage dtype before tl.dot).
    for L, D in ((3, 16), (130, 3)):
        qkv = make((1, 2, L, D), dtype=torch.float16, seed=L)
        do = make((1, 2, L, D), dtype=torch.float16, seed=1)[0]
        got = run(attention, qkv, do, backend="triton")
        assert all(t.dtype == torch.float16 for t in got)
        check(got, oracle(qkv, do), TOL[torch.float16], f"fp16 L={L}")


@settings(max_examples=12, deadline=None, derandomize=True)
@given(L=st.integers(1, 80), D=st.integers(1, 48), scale=st.floats(0.05, 3.0))
def test_random_shapes_forward(L, D, scale):
    qkv = make((1, 1, L, D), seed=L + D)
    got = attention(*qkv, scale=scale, backend="triton")
    want = attention_naive(*(t.double() for t in qkv), scale=scale)
    assert rel_rms(got, want) <= TOL[torch.float32]


def test_auto_dispatch_cpu_is_reference():
    qkv = make((1, 2, 7, 4), seed=0)
    torch.testing.assert_close(attention(*qkv), attention_reference(*qkv), rtol=0, atol=0)
    qkv64 = make((1, 2, 7, 4), dtype=torch.float64, seed=0)
    assert attention(*qkv64).dtype == torch.float64


def test_config_heuristic():
    cfg = attn_module._config
    assert cfg(978, 3)["BLOCK_D"] == 16 and cfg(978, 8)["BLOCK_D"] == 16  # tiny D: no 64-wide pad
    assert (cfg(978, 16)["BLOCK_M"], cfg(978, 16)["BLOCK_N"]) == (64, 64)
    assert not cfg(978, 16)["single"]
    assert cfg(978, 16)["num_stages"] == 3  # Triton's own default on NVIDIA GPUs
    c = cfg(3, 64)
    assert (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_D"], c["single"]) == (16, 16, 64, True)
    c = cfg(978, 128)
    assert (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_D"], c["num_stages"]) == (64, 32, 128, 2)
    assert cfg(40, 40)["BLOCK_D"] == 64
    for L in (1, 3, 37, 130, 978):
        for D in (1, 3, 4, 8, 16, 40, 64, 100, 128):
            c = cfg(L, D)
            assert min(c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_D"]) >= 16  # tl.dot's GPU minimum


def test_errors():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="4-D"):
        attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="same shape"):
        attention(q, q, torch.randn(1, 2, 6, 4))
    with pytest.raises(ValueError, match="same shape"):
        attention(q, torch.randn(1, 2, 5, 3), q)
    big = torch.randn(1, 1, 3, 129)
    with pytest.raises(ValueError, match="between 1 and 128"):
        attention(big, big, big)
    with pytest.raises(ValueError, match="between 1 and 128"):
        attention(big, big, big, backend="reference")
    with pytest.raises(ValueError, match="dtype"):
        attention(q, q.double(), q)
    with pytest.raises(ValueError, match="floating"):
        i = torch.ones(1, 1, 3, 4, dtype=torch.int64)
        attention(i, i, i)
    with pytest.raises(ValueError, match="backend"):
        attention(q, q, q, backend="cuda")
    with pytest.raises(ValueError, match="scale"):
        attention(q, q, q, scale=float("nan"))
    with pytest.raises(ValueError, match="torch.Tensor"):
        attention(q, q, q.numpy())
    with pytest.raises(ValueError, match="float32, bfloat16 and float16"):
        attention(q.double(), q.double(), q.double(), backend="triton")
    with pytest.raises(ValueError, match="power of two"):
        attn_module.attention_triton(q, q, q, block_m=24)
    for bad in ({"block_n": 8}, {"num_warps": 3}, {"num_warps": 32}, {"num_stages": 0}, {"num_stages": 9},
                {"num_stages": True}, {"block_m": 32.0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            attn_module.attention_triton(q, q, q, **bad)
    with pytest.raises(ValueError, match="fp32_precision"):
        attn_module.attention_triton(q, q, q, fp32_precision="fp64")


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(attn_module, "interpreted", lambda kernel: False)
    q = torch.randn(1, 1, 3, 4)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        attention(q, q, q, backend="triton")
    attention(q, q, q)  # auto still works: CPU -> reference


# ----------------------------------------------------------------------------------------------
# GPU: the GenSAN shapes, fp32 and bf16 (skipped without CUDA).
# ----------------------------------------------------------------------------------------------
GENSAN = [(8, 1, 978, 3), (8, 4, 978, 8), (8, 4, 978, 16), (64, 8, 3, 64), (4, 2, 978, 128)]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", GENSAN)
def test_cuda_gensan_shapes(shape, dtype):
    qkv = make(shape, dtype=dtype, device="cuda", seed=0)
    do = make(shape, dtype=dtype, device="cuda", seed=1)[0]
    got = run(attention, qkv, do)  # auto -> triton on CUDA
    assert all(t.dtype == dtype for t in got)
    check(got, oracle(qkv, do), TOL[dtype], f"cuda {dtype}")
    again = run(attention, qkv, do)
    for x, y in zip(got, again):
        assert torch.equal(x, y)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["tf32x3", "ieee"])
def test_cuda_fp32_precisions(precision):
    shape = (8, 4, 978, 8)
    qkv = make(shape, device="cuda", seed=0)
    do = make(shape, device="cuda", seed=1)[0]
    got = run(attn_module.attention_triton, qkv, do, fp32_precision=precision)
    check(got, oracle(qkv, do), TOL[torch.float32], f"cuda fp32 {precision}")


def test_sweep_script_smoke(tmp_path):
    # The sweep's whole path (compile worker process, checks, timing, JSON) at its smallest; a
    # generous budget so a slow machine measures everything instead of skipping.
    spec = importlib.util.spec_from_file_location(
        "sweep_attention", Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_attention.py"
    )
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    out = tmp_path / "sweep.json"
    assert sweep.main(["--smoke", "--jobs", "1", "--dtypes", "float32", "--budget-s", "600", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"device", "versions", "fp32_precision", "results", "configs"} <= set(report) and report["complete"]
    assert len(report["results"]) == len(sweep.SMOKE_SHAPES) * 3  # fwd, fwd_bwd and bwd
    for entry in report["results"]:
        assert entry["default"]["status"] == "ok"
        # bwd is fwd_bwd - fwd of medians: on a busy machine it can come out below 0
        assert entry["sdpa_ms"] > 0 if entry["mode"] in sweep.MODES else math.isfinite(entry["sdpa_ms"])
        assert entry["best"]["ms"] <= entry["default"]["ms"]
    rows = report["configs"]
    assert len(rows) == len(sweep.SMOKE_SHAPES) * 3  # two configurations a shape, and "ieee"
    assert {r["config"]["fp32_precision"] for r in rows} == {"tf32x3", "ieee"}
    assert all(r["status"] == "ok" and r["deterministic"] and r["max_rel_rms"] < 1e-5 for r in rows)


def test_benchmark_script_smoke(tmp_path):
    # The benchmark's own code path (checks, timing, JSON), cheapest settings, on CPU.
    from tnfast.benchmarks import bench_attention as bench

    out = tmp_path / "bench.json"
    rc = bench.main(["--scale", "tiny", "--device", "cpu", "--providers", "tnfast_triton,torch_sdpa,matmul",
                     "--modes", "fwd", "--warmup", "0", "--repeats", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert {"device", "versions", "git_commit", "date", "results"} <= set(report)
    rows = report["results"]
    assert len(rows) == 7 * 3  # 6 column shapes + 1 row shape, 3 providers
    sdpa = [r for r in rows if r["provider"] == "torch_sdpa"]
    assert all(r["status"] == "ok" and r["median_ms"] > 0 and r["speedup_vs_matmul"] > 0 for r in sdpa)
    assert all(r["status"].startswith("skipped") for r in rows if r["provider"] == "tnfast_triton")
