"""Gradient norms and clipping against a float64 oracle and torch.nn.utils."""

from __future__ import annotations

import math
import os
import random
import struct
import warnings

import numpy as np
import pytest
import torch

import trainops
from trainops import _extension, reference
from trainops.clip import get_total_norm

from .conftest import FLOAT_DTYPES, device_params, op_error

CHUNK = int(_extension.build_info()["chunk_size"])
NORM_TYPES = [1.0, 2.0, math.inf, 3.0, 0.5]
SIZES = [0, 1, 15, 17, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


def rel_err(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(b), 1e-300)


def make_param(shape, dtype, device, scale=1.0, grad=True, gen=None):
    p = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
    if grad:
        p.grad = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype, device=device)
    return p


# Tolerance on the total norm against the float64 oracle of the same inputs:
# inputs are exact in both, so only accumulation error remains.
def norm_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-6


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("p", NORM_TYPES)
def test_norm_matches_oracle(device, dtype, p):
    gen = torch.Generator().manual_seed(1)
    tensors = [(torch.randn(n, generator=gen) * 3).to(dtype=dtype, device=device) for n in SIZES]
    total, per = torch.ops.trainops.multi_tensor_norm(tensors, p, True)
    assert total.dtype == reference.norm_result_dtype(tensors)
    assert total.device.type == device
    assert rel_err(total, reference.total_norm(tensors, p)) <= norm_tol(dtype)
    for got, want in zip(per.cpu(), reference.per_tensor_norms(tensors, p)):
        assert rel_err(got, want) <= norm_tol(dtype)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 1.5, 3.0])
def test_small_and_general_p_keep_1e_6(device, p):
    """The norm is sum^(1/p): a sum's relative error reaches it multiplied by
    1/p, so general orders take |x|^p and sum in fp64 (fp32 gave 0.97-1.09e-6
    at p = 0.1 on these inputs). What is left is the rounding of the float32
    result, <= 2^-24: checked at 1e-7, ten times inside the 1e-6 target."""
    gen = torch.Generator().manual_seed(3)
    for scale in (1e-30, 1e-20):  # norms up to ~1e30 at p = 0.1: inside fp32's range
        x = ((torch.rand(100_000, generator=gen) * 2 - 1) * scale).to(device)
        assert rel_err(trainops.get_total_norm([x], p), torch.linalg.vector_norm(x.double(), p)) <= 1e-7, scale


@pytest.mark.parametrize("device", device_params())
def test_mixed_dtypes_in_one_call(device):
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(n, generator=gen).to(dtype=d, device=device) for n, d in zip([5, 70000, 33, 0, 1000], FLOAT_DTYPES + [torch.float16])]
    for p in NORM_TYPES:
        total, per = torch.ops.trainops.multi_tensor_norm(tensors, p, True)
        assert total.dtype == torch.float64
        assert rel_err(total, reference.total_norm(tensors, p)) <= 1e-6
        assert per.shape == (len(tensors),)
    no_fp64 = [t for t in tensors if t.dtype != torch.float64]
    assert torch.ops.trainops.multi_tensor_norm(no_fp64, 2.0, False)[0].dtype == torch.float32


@pytest.mark.parametrize("device", device_params())
def test_non_contiguous_tensors(device):
    base = torch.randn(300, 200, device=device)
    views = [base.t(), base[:, ::3], base[::2], base.unsqueeze(0).expand(2, 300, 200)]
    for p in NORM_TYPES:
        total, per = torch.ops.trainops.multi_tensor_norm(views, p, True)
        assert rel_err(total, reference.total_norm(views, p)) <= 1e-6
    # In-place ops on strided views write the right elements and nothing else.
    a = torch.randn(64, 300, device=device, dtype=torch.float64)
    b = a.clone()
    view = a[:, ::3]
    torch.ops.trainops.multi_tensor_clip_scale_([view], torch.tensor(4.0, device=device, dtype=torch.float64), 1.0)
    expected = b.clone()
    expected[:, ::3] *= 1.0 / (4.0 + 1e-6)
    torch.testing.assert_close(a, expected, rtol=1e-15, atol=0)
    view2 = a.t()
    torch.ops.trainops.multi_tensor_clamp_([view2], 0.1)
    assert a.abs().max() <= 0.1
    with pytest.raises(op_error(ValueError), match="share memory"):
        torch.ops.trainops.multi_tensor_clamp_([torch.randn(3, device=device).expand(4, 3)], 0.1)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("p", NORM_TYPES)
def test_empty_and_empty_tensor(device, p):
    assert float(trainops.get_total_norm([])) == 0.0
    e = torch.empty(0, device=device)
    total = trainops.get_total_norm([e, torch.ones(4, device=device)], p)
    assert rel_err(total, reference.total_norm([torch.ones(4)], p)) <= 1e-7
    assert float(trainops.get_total_norm([e], p)) == 0.0


def test_no_spurious_overflow_or_underflow():
    big = torch.full((1000,), 1e30)
    assert rel_err(trainops.get_total_norm([big]), 1e30 * math.sqrt(1000)) <= 1e-6
    assert rel_err(trainops.get_total_norm([big], 1.0), 1e33) <= 1e-6
    assert rel_err(trainops.get_total_norm([big], 3.0), 1e30 * 1000 ** (1 / 3)) <= 1e-6
    tiny = torch.full((1000,), 1e-30)
    assert rel_err(trainops.get_total_norm([tiny]), 1e-30 * math.sqrt(1000)) <= 1e-6
    sub = torch.full((CHUNK + 3,), 1e-40)  # fp32 subnormals
    assert rel_err(trainops.get_total_norm([sub]), reference.total_norm([sub], 2.0)) <= 1e-6
    half = torch.full((1000,), 60000.0, dtype=torch.float16)
    total = trainops.get_total_norm([half])
    assert total.dtype == torch.float32
    assert rel_err(total, 60000.0 * math.sqrt(1000)) <= 1e-6
    huge64 = torch.full((10,), 1e300, dtype=torch.float64)
    assert rel_err(trainops.get_total_norm([huge64]), 1e300 * math.sqrt(10)) <= 1e-14
    # fp64 chunks whose plain sums fit but whose combined sum would not.
    big64 = [torch.full((2 * CHUNK,), 4.79e151, dtype=torch.float64)]
    assert rel_err(trainops.get_total_norm(big64), 4.79e151 * math.sqrt(2 * CHUNK)) <= 1e-14
    # Very large p: 1.9^1100 overflows even fp64.
    vals = torch.full((100,), 1.9)
    assert rel_err(trainops.get_total_norm([vals], 1100.0), 1.9 * 100 ** (1 / 1100)) <= 1e-6
    # Huge and tiny chunks in one list: the combine keeps the small ones' share.
    mixed = [torch.full((CHUNK,), 1e20), torch.full((CHUNK,), 1e-20)]
    assert rel_err(trainops.get_total_norm(mixed, 1.0), reference.total_norm(mixed, 1.0)) <= 1e-6


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_fp64_subnormal_grads(device, p):
    # Below 2^-1024, 1 / max is inf: the rescue pass divides by the max (it
    # multiplied by 1 / max, which gave NaN). Oracle: max * (sum (x/max)^p)^(1/p).
    m = 2e-310
    g = torch.tensor([m, 0.0, -m / 2, 0.0], dtype=torch.float64, device=device)
    want = m if math.isinf(p) else m * (1 + 0.5**p) ** (1 / p)
    total = trainops.get_total_norm([g], p)
    assert rel_err(total, want) <= 1e-14
    smallest = torch.tensor([5e-324, 0.0], dtype=torch.float64, device=device)
    assert float(trainops.get_total_norm([smallest], p)) == 5e-324
    param = torch.nn.Parameter(torch.zeros_like(g))
    param.grad = g.clone()
    assert rel_err(trainops.clip_grad_norm_([param], 1.0, p), want) <= 1e-14
    assert torch.equal(param.grad, g)  # far below max_norm: untouched


def test_nonfinite_like_torch():
    for bad in (math.nan, math.inf, -math.inf):
        for p in NORM_TYPES:
            g = torch.randn(100)
            g[7] = bad
            got = trainops.get_total_norm([torch.randn(5), g], p)
            want = torch.nn.utils.get_total_norm([torch.randn(5), g], p)
            assert (math.isnan(got) and math.isnan(want)) or float(got) == float(want)
    # nan and inf in one list: nan
    assert math.isnan(trainops.get_total_norm([torch.tensor([math.inf]), torch.tensor([math.nan])]))


# Non-finite values where the kernels' main loops read them: inside aligned
# whole chunks (a short tensor takes the CUDA kernel's scalar tail instead),
# and in a last chunk of 64 elements (the CUDA loop's bounds-checked
# iteration). On CUDA only an inf-norm keeps a NaN-sticky max per element; the
# other norms let the sum carry the NaN, so a chunk with a NaN can have an
# inf max ({inf, NaN} partial) or a finite max so large that the chunk goes
# through the rescue pass with a NaN sum: those pairs share a chunk here.
_HUGE = {torch.float16: None, torch.bfloat16: 1e35, torch.float32: 1e35, torch.float64: 1e300}
_NONFINITE_PLACES = {
    "nan": {7: math.nan},
    "inf": {7: math.inf},
    "-inf": {CHUNK + 100: -math.inf},
    "nan and inf in one chunk": {7: math.inf, 100: math.nan},
    "nan beside a huge value in one chunk": {7: "huge", 100: math.nan},
    "nan in the short last chunk": {2 * CHUNK + 5: math.nan},
    "inf in the short last chunk": {2 * CHUNK + 5: math.inf},
    "all nan": None,
}


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case", list(_NONFINITE_PLACES))
def test_nonfinite_inside_whole_chunks(device, dtype, case):
    places = _NONFINITE_PLACES[case]
    if "huge" in case and _HUGE[dtype] is None:
        pytest.skip("no fp16 value is large enough to need the rescue pass")
    gen = torch.Generator().manual_seed(11)
    bad = torch.randn(2 * CHUNK + 64, generator=gen, dtype=torch.float64)
    if places is None:
        bad.fill_(math.nan)
    else:
        for i, v in places.items():
            bad[i] = _HUGE[dtype] if v == "huge" else v
    good = torch.randn(CHUNK + 8, generator=gen, dtype=torch.float64)
    tensors = [good.to(device=device, dtype=dtype), bad.to(device=device, dtype=dtype)]
    want_bad = math.nan if places is None or any(v != v for v in places.values() if v != "huge") else math.inf
    for p in NORM_TYPES:
        total, per = torch.ops.trainops.multi_tensor_norm(tensors, p, True)
        for got in (float(total), float(per[1])):
            assert (math.isnan(got) and math.isnan(want_bad)) or got == want_bad, (p, got, want_bad)
        oracle = float(torch.linalg.vector_norm(tensors[0].double(), p))
        assert rel_err(per[0], oracle) <= 1e-6, (p, float(per[0]), oracle)


@pytest.mark.numerics
def test_accuracy_gpt2_embedding_size():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50257, 768, generator=gen)
    want = reference.total_norm([x], 2.0).double()
    assert rel_err(trainops.get_total_norm([x]), want) <= 1e-6
    for p in (1.0, 3.0):
        assert rel_err(trainops.get_total_norm([x], p), reference.total_norm([x], p)) <= 1e-6


@pytest.mark.slow
def test_accuracy_1e8_elements():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(100_000_000, generator=gen) + 0.5  # positive: worst case for summation error
    want = torch.sqrt((x.double() ** 2).sum()).item()
    assert rel_err(trainops.get_total_norm([x]), want) <= 1e-6
    want1 = x.double().sum().item()
    assert rel_err(trainops.get_total_norm([x], 1.0), want1) <= 1e-6


@pytest.mark.slow
def test_64bit_element_count():
    n = 2**31 + 17
    x = torch.ones(n, dtype=torch.bfloat16)
    assert rel_err(trainops.get_total_norm([x]), math.sqrt(n)) <= 1e-7
    assert float(trainops.get_total_norm([x], math.inf)) == 1.0
    x[-1] = 3.0
    assert float(trainops.get_total_norm([x], math.inf)) == 3.0
    torch.ops.trainops.multi_tensor_clip_scale_([x], torch.tensor(2.0), 1.0 + 2e-6)
    assert float(x[0]) == 0.5 and float(x[n // 2]) == 0.5 and float(x[-1]) == 1.5


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bitwise_reproducible_threads_and_isa(dtype, threads, monkeypatch):
    gen = torch.Generator().manual_seed(5)
    tensors = [torch.randn(n, generator=gen).to(dtype) for n in [3 * CHUNK + 7, 100, CHUNK - 1, 0, 5000]] + [
        torch.randn(100, generator=gen).to(dtype) for _ in range(300)
    ]
    results = []
    for isa in ("baseline", "avx2", "avx512"):
        monkeypatch.setenv("TRAINOPS_CPU_ISA", isa)
        for n in (1, 2):
            threads(n)
            for _ in range(2):
                results.append([torch.ops.trainops.multi_tensor_norm(tensors, p, True) for p in NORM_TYPES])
    for other in results[1:]:
        for (t0, per0), (t1, per1) in zip(results[0], other):
            assert torch.equal(t0, t1) or (t0.isnan() and t1.isnan())
            assert torch.equal(per0, per1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scale_and_clamp_identical_across_isas(dtype, monkeypatch):
    gen = torch.Generator().manual_seed(6)
    src = (torch.randn(CHUNK + 33, generator=gen) * 4).to(dtype)
    src[5] = math.nan
    outs = []
    for isa in ("baseline", "avx2", "avx512"):
        monkeypatch.setenv("TRAINOPS_CPU_ISA", isa)
        a, b = src.clone(), src.clone()
        torch.ops.trainops.multi_tensor_clip_scale_([a], torch.tensor(7.3), 1.1)
        torch.ops.trainops.multi_tensor_clamp_([b], 0.7)
        outs.append((a, b))
    for a, b in outs[1:]:
        assert torch.equal(a.view(torch.uint8), outs[0][0].view(torch.uint8))
        assert torch.equal(b.view(torch.uint8), outs[0][1].view(torch.uint8))


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("max_norm", [1e-8, 0.5, 1e8])
def test_clip_grad_norm_matches_torch(device, dtype, max_norm):
    gen = torch.Generator().manual_seed(7)
    ours = [make_param(s, dtype, device, gen=gen) for s in [(10, 10), (CHUNK + 1,), (0,), (3, 4, 5)]]
    ours.append(make_param((4,), dtype, device, grad=False))
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    for a, b in zip(ours, theirs):
        b.grad = None if a.grad is None else a.grad.clone()
    want_total = reference.total_norm([p.grad for p in ours if p.grad is not None], 2.0)
    total = trainops.clip_grad_norm_(ours, max_norm)
    assert rel_err(total, want_total) <= norm_tol(dtype)
    # Clip with torch's formula applied to the exact norm: grads must agree to
    # the rounding of one multiply.
    reference.clip_scale_([p.grad for p in theirs if p.grad is not None], want_total.to(device), max_norm)
    for a, b in zip(ours, theirs):
        if a.grad is None:
            assert b.grad is None
            continue
        tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6, torch.float64: 1e-12}[dtype]
        atol = tol * 1e-6
        if torch.device(device).type == "cuda":
            # On CUDA the reference's mul_ by a 0-dim device tensor loads the
            # coefficient as fp16 (the CPU keeps it in float): a relative change
            # of up to 2^-11, inside rtol for normal values, but a product among
            # fp16 subnormals can move by one subnormal step, 2^-24 (an H200:
            # 70 of 65,537 values). One such step is allowed there.
            atol = max(atol, torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps)
        torch.testing.assert_close(a.grad, b.grad, rtol=tol, atol=atol)


def test_clip_matches_torch_bitwise_given_the_same_total():
    gen = torch.Generator().manual_seed(8)
    for dtype in FLOAT_DTYPES:
        g = (torch.randn(CHUNK + 9, generator=gen) * 10).to(dtype)
        for total_dtype in (torch.float32, torch.float64):
            total = torch.tensor(123.456, dtype=total_dtype)
            a, b = g.clone(), g.clone()
            torch.ops.trainops.multi_tensor_clip_scale_([a], total, 1.0)
            pa = torch.nn.Parameter(torch.zeros_like(b))
            pa.grad = b
            torch.nn.utils.clip_grads_with_norm_([pa], 1.0, total)
            assert torch.equal(a, b), (dtype, total_dtype)


@pytest.mark.parametrize("p", NORM_TYPES)
def test_fused_clip_op_equals_norm_then_scale(p):
    gen = torch.Generator().manual_seed(12)
    a = [torch.randn(n, generator=gen).to(d) for n, d in zip([5, CHUNK + 3, 0, 77], FLOAT_DTYPES)]
    b = [t.clone() for t in a]
    total_a = torch.ops.trainops.multi_tensor_clip_grad_norm_(a, 0.7, p)
    total_b, _ = torch.ops.trainops.multi_tensor_norm(b, p, False)
    torch.ops.trainops.multi_tensor_clip_scale_(b, total_b, 0.7)
    assert torch.equal(total_a, total_b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with pytest.raises(op_error(ValueError), match="max_norm"):
        torch.ops.trainops.multi_tensor_clip_grad_norm_(a, -1.0, p)


def test_no_writes_when_not_clipping():
    # A signalling NaN turns quiet when multiplied (even by 1): its bits show
    # whether the kernel wrote the element.
    snan = struct.unpack("<f", struct.pack("<I", 0x7FA00000))[0]
    g = torch.randn(CHUNK + 5)
    g.view(torch.int32)[77] = 0x7FA00000
    p = torch.nn.Parameter(torch.zeros_like(g))
    p.grad = g
    before = g.clone()
    trainops.clip_grads_with_norm_([p], max_norm=10.0, total_norm=torch.tensor(1.0))
    assert torch.equal(g.view(torch.int32), before.view(torch.int32))
    assert math.isnan(snan)
    # ...and when clipping, every element is written (the sNaN is quieted).
    trainops.clip_grads_with_norm_([p], max_norm=0.5, total_norm=torch.tensor(1.0))
    assert int(g.view(torch.int32)[77]) != 0x7FA00000


def test_clip_grads_with_norm_total_norm_forms():
    p = torch.nn.Parameter(torch.zeros(4))
    for total in (4.0, 4, torch.tensor(4.0), torch.tensor([4.0]), torch.tensor(4.0, dtype=torch.float64)):
        p.grad = torch.ones(4)
        trainops.clip_grads_with_norm_([p], 2.0, total)
        torch.testing.assert_close(p.grad, torch.full((4,), 2.0 / (4.0 + 1e-6)))
    p.grad = torch.ones(4)
    for bad in ("4.0", None, torch.tensor(4.0 + 0j)):
        with pytest.raises(TypeError, match="total_norm"):
            trainops.clip_grads_with_norm_([p], 2.0, bad)
    assert torch.equal(p.grad, torch.ones(4))


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_clip_grad_value_matches_torch(device, dtype):
    gen = torch.Generator().manual_seed(9)
    for clip_value in (0.0, 0.3, 1.2345678, 1e6):
        g = (torch.randn(CHUNK + 21, generator=gen) * 2).to(dtype=dtype, device=device)
        g[3] = math.nan
        g[4] = math.inf
        g[5] = -math.inf
        a = torch.nn.Parameter(torch.zeros_like(g))
        b = torch.nn.Parameter(torch.zeros_like(g))
        a.grad, b.grad = g.clone(), g.clone()
        trainops.clip_grad_value_([a], clip_value)
        if dtype == torch.float16 and clip_value > 65504:
            # torch raises (the bound overflows fp16); trainops clamps to +-inf: a no-op.
            assert torch.equal(a.grad.view(torch.uint8), g.view(torch.uint8))
            continue
        torch.nn.utils.clip_grad_value_([b], clip_value)
        # Bitwise equal except NaN payloads (torch's vectorised bf16 path
        # rewrites a NaN's bits; both keep NaN as NaN) and, on CUDA, the sign
        # of a zero: with clip_value 0 trainops clamps a negative value to
        # -0.0 on every device, as torch does on the CPU, while torch's CUDA
        # foreach min/max (clamp_min to -0.0, then clamp_max to +0.0) picks +0.0.
        nan = a.grad.isnan()
        assert torch.equal(nan, b.grad.isnan())
        ours, theirs = a.grad[~nan], b.grad[~nan]
        if device != "cpu":
            ours, theirs = ours + 0.0, theirs + 0.0  # -0.0 + 0.0 == +0.0
        assert torch.equal(ours.view(torch.uint8), theirs.view(torch.uint8)), clip_value


@pytest.mark.numerics
@pytest.mark.parametrize("device", device_params())
def test_fuzz_against_oracle_and_torch(device):
    rng = random.Random(1234)
    sizes = [0, 1, 2, 15, 16, 17, 100, 1023, CHUNK - 1, CHUNK, CHUNK + 1]
    for case in range(300):
        n = rng.choice([1, 2, 5, 20, 60])
        dtypes = rng.sample(FLOAT_DTYPES, rng.randint(1, 4))
        p = rng.choice(NORM_TYPES + [1.5, 7.0])
        max_norm = rng.choice([1e-6, 0.1, 1.0, 10.0, 1e9])
        scale = rng.choice([1e-3, 1.0, 30.0])
        gen = torch.Generator().manual_seed(case)
        params = []
        for _ in range(n):
            size = rng.choice(sizes) if rng.random() < 0.7 else rng.randint(0, 3000)
            params.append(make_param((size,), rng.choice(dtypes), device, scale, grad=rng.random() > 0.15, gen=gen))
        grads = [q.grad for q in params if q.grad is not None]
        want = reference.total_norm(grads, p)
        before = [g.clone() for g in grads]
        total = trainops.clip_grad_norm_(iter(params), max_norm, p)
        tol = 1e-12 if all(g.dtype == torch.float64 for g in grads) else 2e-6
        assert rel_err(total, want) <= tol, (case, p)
        assert total.device.type == (device if grads else "cpu")
        if grads and torch.isfinite(want):
            coef = min(max_norm / (float(want) + 1e-6), 1.0)
            for g, g0 in zip(grads, before):
                if coef == 1.0:
                    assert torch.equal(g, g0)
                else:
                    exp = (g0.double() * coef).to(g.dtype)
                    rtol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 4e-6}[g.dtype]
                    torch.testing.assert_close(g, exp, rtol=rtol, atol=0, msg=lambda m: f"case {case} p {p} {g.dtype}: {m}")
        if grads and p in (1.0, 2.0, math.inf) and all(g.numel() for g in grads):
            torch_total = torch.nn.utils.get_total_norm(before, p)
            if torch.isfinite(torch_total):  # torch's fp16/bf16 totals overflow
                assert rel_err(total, torch_total.double()) <= (5e-2 if any(g.dtype in (torch.float16, torch.bfloat16) for g in grads) else 1e-4)


def _oracle64(grads: list[torch.Tensor], p: float) -> float:
    """float64 p-norm of the concatenation, by torch.linalg.vector_norm (independent
    of trainops.reference; the fuzz's values are far from fp64's range limits)."""
    x = torch.cat([torch.zeros(0, dtype=torch.float64)] + [g.detach().to("cpu", torch.float64).reshape(-1) for g in grads])
    return float(torch.linalg.vector_norm(x, p)) if x.numel() else 0.0


def _per_tensor_oracle64(grads: list[torch.Tensor], p: float) -> torch.Tensor:
    """float64 p-norm of each tensor (0 for an empty one), in one vectorised pass."""
    x = torch.cat([g.detach().to("cpu", torch.float64).reshape(-1) for g in grads]).abs()
    segment = torch.repeat_interleave(torch.arange(len(grads)), torch.tensor([g.numel() for g in grads]))
    out = torch.zeros(len(grads), dtype=torch.float64)
    if math.isinf(p):
        return out.scatter_reduce_(0, segment, x, "amax")
    return out.index_add_(0, segment, x**p) ** (1.0 / p)


# Long lists: the chunk table / per-tensor bookkeeping of 10,000 tensors (mixed
# dtypes, empty tensors, parameters without a grad, a few tensors past a chunk)
# against the float64 oracle for every norm type, general p included, and
# against torch for p in {1, 2, inf}.
LONG_FUZZ_CASES = {
    "mixed": (FLOAT_DTYPES, 1.0),
    "fp32-bf16-fp16": ([torch.float32, torch.bfloat16, torch.float16], 30.0),  # fp32 totals
    "fp64": ([torch.float64], 1e-3),  # fp64 accumulation: 1e-12
}


@pytest.mark.numerics
@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("case", list(LONG_FUZZ_CASES))
def test_fuzz_long_lists(device, case):
    dtypes, scale = LONG_FUZZ_CASES[case]
    seed = list(LONG_FUZZ_CASES).index(case)
    rng = random.Random(4321 + seed)
    gen = torch.Generator().manual_seed(99 + seed)
    params = []
    for _ in range(10_000):
        r = rng.random()
        size = 0 if r < 0.1 else rng.choice([CHUNK - 1, CHUNK + 1, 3000]) if r > 0.998 else rng.randint(1, 40)
        params.append(make_param((size,), rng.choice(dtypes), device, scale, grad=rng.random() > 0.15, gen=gen))
    has_grad = [q.grad is not None for q in params]
    grads = [q.grad for q in params if q.grad is not None]
    # The fuzz itself: None grads, empty grads and every dtype asked for are there.
    assert 1000 < has_grad.count(False) < 2000 and sum(g.numel() == 0 for g in grads) > 500
    assert {g.dtype for g in grads} == set(dtypes) and any(g.numel() > CHUNK for g in grads)
    has_fp64 = any(g.dtype == torch.float64 for g in grads)
    low = {g.dtype for g in grads} & {torch.float16, torch.bfloat16}
    tol = 1e-12 if dtypes == [torch.float64] else 1e-6
    # torch rounds each tensor's norm to its dtype (bf16: 2^-9 relative) and sums in fp32 (or fp64 with an fp64 grad).
    torch_tol = 1e-2 if torch.bfloat16 in low else 2e-3 if low else 1e-10 if dtypes == [torch.float64] else 1e-5
    for p in (0.5, 1.0, 2.0, 3.0, math.inf):
        want = _oracle64(grads, p)
        total = trainops.get_total_norm(grads, p)
        assert total.dtype == (torch.float64 if has_fp64 else torch.float32) and total.device.type == device
        assert rel_err(total, want) <= tol, (p, rel_err(total, want))
        per = trainops.grad_norms(params, p)
        assert per.shape == (len(grads),) and per.dtype == torch.float32 and per.device.type == device
        per, per_want = per.cpu().double(), _per_tensor_oracle64(grads, p)
        off = ((per - per_want).abs() > 1e-6 * per_want).nonzero().flatten()  # fp32 result: <= 2^-24 rounding
        assert off.numel() == 0, (p, off[:5].tolist(), per[off[:5]].tolist(), per_want[off[:5]].tolist())
        if p in (1.0, 2.0, math.inf):
            torch_total = torch.nn.utils.get_total_norm([g for g in grads if g.numel()], p)  # torch's inf-norm refuses empty tensors
            if torch.isfinite(torch_total):  # torch's fp16 per-tensor norms overflow above 65504
                assert rel_err(total, torch_total.double()) <= torch_tol, (p, rel_err(total, torch_total.double()))
    # Clip (a generator of parameters), at a general p and at 2: every grad is
    # scaled by max_norm / (total + 1e-6); grads stay None where they were.
    for p in (3.0 if seed % 2 else 0.5, 2.0):
        before = [g.clone() for g in grads]
        want = _oracle64(before, p)
        total = trainops.clip_grad_norm_((q for q in params), 0.25 * want, p)
        assert rel_err(total, want) <= tol, p
        assert [q.grad is not None for q in params] == has_grad
        coef = 0.25 * want / (float(total) + 1e-6)
        after = [q.grad for q in params if q.grad is not None]
        assert all(a is g for a, g in zip(after, grads))  # scaled in place
        for dtype in dtypes:
            got = torch.cat([g.reshape(-1) for g in grads if g.dtype == dtype])
            exp = torch.cat([(g0.double() * coef).to(dtype).reshape(-1) for g0 in before if g0.dtype == dtype])
            rtol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
            torch.testing.assert_close(got, exp, rtol=rtol, atol=0, msg=lambda m: f"{case} p {p} {dtype}: {m}")
        assert rel_err(_oracle64(grads, p), 0.25 * want) <= 2e-2  # clipped to max_norm (bf16 rounding)


@pytest.mark.parametrize("n_tensors", [10_000, 20_000])
def test_long_lists(n_tensors):
    gen = torch.Generator().manual_seed(10)
    grads = [torch.randn(rng, generator=gen) for rng in [1 + (i * 37) % 150 for i in range(n_tensors)]]
    total, per = torch.ops.trainops.multi_tensor_norm(grads, 2.0, True)
    assert rel_err(total, reference.total_norm(grads, 2.0)) <= 1e-6
    assert per.shape == (n_tensors,)
    idx = [0, 1, n_tensors // 2, n_tensors - 1]
    for i in idx:
        assert rel_err(per[i], reference.tensor_norm64(grads[i], 2.0)) <= 1e-6
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for q, g in zip(params, grads):
        q.grad = g.clone()
    norms = trainops.grad_norms(params)
    assert norms.dtype == torch.float32 and norms.shape == (n_tensors,)
    trainops.clip_grad_norm_(params, 1.0)
    assert rel_err(trainops.get_total_norm([q.grad for q in params]), 1.0) <= 1e-5


def test_long_list_argument_is_released():
    # A long Tensor[] argument: its facts are read on every thread and its
    # handles released under one GIL hold (stable build). Every reference the
    # call took must be gone afterwards, called from the main thread, from
    # another Python thread, and when the op raises part-way through the list.
    # (Not reached from Python: a thread without a Python thread state, which
    # deletes the handles one by one.)
    import sys
    import threading

    grads = [torch.randn(7) for _ in range(3000)]
    before = [sys.getrefcount(g) for g in grads]
    torch.ops.trainops.multi_tensor_norm(grads, 2.0, False)
    result = {}
    worker = threading.Thread(target=lambda: result.update(total=torch.ops.trainops.multi_tensor_clip_grad_norm_(grads, 1e9, 2.0)))
    worker.start()
    worker.join()
    assert rel_err(result["total"], reference.total_norm(grads, 2.0)) <= 1e-6
    bad = grads + [torch.zeros(3, dtype=torch.int32)]
    with pytest.raises(op_error(TypeError)):
        torch.ops.trainops.multi_tensor_norm(bad, 2.0, False)
    del bad
    assert [sys.getrefcount(g) for g in grads] == before


# --------------------------------------------------------------------------- API


@pytest.mark.skipif(not hasattr(torch, "_lazy_clone"), reason="torch without copy-on-write tensors")
@pytest.mark.parametrize("n_tensors", [2, 3000])  # the short path and the parallel facts pass
def test_copy_on_write_tensors(n_tensors):
    # Lazy clones share one copy-on-write storage. Norms read it without
    # materialising a copy (read-only data pointers, taken on every thread);
    # a scale materialises each tensor's own copy (mutable pointers, taken on
    # one thread) and leaves the shared original alone.
    base = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    original = base.clone()
    grads = [torch._lazy_clone(base) for _ in range(n_tensors)]
    expected = reference.total_norm([original] * n_tensors, 2.0)
    total, _ = torch.ops.trainops.multi_tensor_norm(grads, 2.0, False)
    assert rel_err(total, expected) <= 1e-6
    assert all(torch._C._is_cow_tensor(g) for g in grads)
    # A coefficient of exactly 1 writes nothing: still copy-on-write.
    torch.ops.trainops.multi_tensor_clip_scale_(grads, total, 1e9)
    torch.ops.trainops.multi_tensor_clip_grad_norm_(grads, 1e9, 2.0)
    assert all(torch._C._is_cow_tensor(g) for g in grads)
    # With a strided view of a lazy clone in the list too (a contiguous copy, written back).
    view_base = torch._lazy_clone(base.view(10, 100))
    view = view_base[:, ::2]
    everything = grads + [view]
    expected = reference.total_norm([original] * n_tensors + [original.view(10, 100)[:, ::2]], 2.0)
    total = torch.ops.trainops.multi_tensor_clip_grad_norm_(everything, 1.0, 2.0)
    assert rel_err(total, expected) <= 1e-6
    coef = float(torch.clamp(1.0 / (total + 1e-6), max=1.0))
    for g in grads:
        torch.testing.assert_close(g, original * coef)
    torch.testing.assert_close(view, original.view(10, 100)[:, ::2] * coef)
    torch.testing.assert_close(view_base[:, 1::2], original.view(10, 100)[:, 1::2])
    assert torch.equal(base, original)


@pytest.mark.parametrize("device", device_params())
def test_single_tensor_and_generators(device):
    p = make_param((5, 5), torch.float32, device)
    g0 = p.grad.clone()
    total = trainops.clip_grad_norm_(p, 1e9)
    assert total.device.type == device
    assert rel_err(total, g0.double().norm()) <= 1e-6
    assert float(trainops.get_total_norm(g0)) == pytest.approx(float(g0.double().norm()), rel=1e-6)
    assert float(trainops.get_total_norm(x for x in [g0])) == pytest.approx(float(g0.double().norm()), rel=1e-6)
    with pytest.warns(UserWarning, match="empty generator"):
        out = trainops.clip_grad_norm_((x for x in []), 1.0)
    assert out.device.type == "cpu" and float(out) == 0.0  # nothing to take a device from: CPU, as torch
    assert float(trainops.clip_grad_norm_([], 1.0)) == 0.0
    no_grad = [make_param((3,), torch.float32, device, grad=False)]
    assert float(trainops.clip_grad_norm_(no_grad, 1.0)) == 0.0
    trainops.clip_grad_value_(no_grad, 1.0)
    assert trainops.grad_norms(no_grad).shape == (0,)


def test_foreach_accepted():
    for foreach in (None, True, False):
        p = make_param((10,), torch.float32, "cpu")
        trainops.clip_grad_norm_([p], 1.0, foreach=foreach)
        trainops.clip_grad_value_([p], 1.0, foreach=foreach)
        trainops.get_total_norm([p.grad], foreach=foreach)
        trainops.clip_grads_with_norm_([p], 1.0, torch.tensor(2.0), foreach=foreach)


@pytest.mark.parametrize("device", device_params())
def test_error_if_nonfinite_leaves_grads_untouched(device):
    params = [make_param((10,), torch.float32, device) for _ in range(3)]
    params[1].grad[2] = math.inf
    before = [q.grad.clone() for q in params]
    with pytest.raises(RuntimeError, match="non-finite"):
        trainops.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for q, b in zip(params, before):
        assert torch.equal(q.grad, b)
    # Without the flag: like torch, the total is inf and grads are scaled by 0 (nan at inf).
    total = trainops.clip_grad_norm_(params, 1.0)
    assert math.isinf(total)


NONFINITE_CASES = {"inf": [math.inf], "-inf": [-math.inf], "nan": [math.nan], "inf and nan": [math.inf, math.nan]}


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + ["mixed"], ids=str)
@pytest.mark.parametrize("bad", list(NONFINITE_CASES))
def test_nonfinite_grads_scaled_like_torch(device, dtype, bad):
    """Without error_if_nonfinite, torch scales by max_norm / (total + 1e-6)
    all the same: by 0 for an inf total (finite grads become +-0, an inf grad
    nan), by nan for a nan total (every grad nan). trainops must write the
    same grads: NaN where torch has NaN, every other element bitwise equal
    (signed zeros included); NaN payloads may differ (torch's bf16 path
    rewrites them; see test_clip_grad_value_matches_torch)."""
    dtypes = FLOAT_DTYPES if dtype == "mixed" else [dtype]
    gen = torch.Generator().manual_seed(13)
    shapes = [(CHUNK + 5,), (7, 3), (40,), (6,)]  # past a chunk boundary, and small ones
    src = [(torch.randn(s, generator=gen, dtype=torch.float64) * 3).to(dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]
    for j, value in enumerate(NONFINITE_CASES[bad]):
        src[j * 2][5 + j] = value  # the bad element(s): in the first and in the third grad
    src[1][0, 0] = -0.0
    for p in (1.0, 2.0, math.inf):
        for max_norm in (0.5, 1e9):
            ours = [make_param(g.shape, g.dtype, device, grad=False) for g in src]
            theirs = [make_param(g.shape, g.dtype, device, grad=False) for g in src]
            for a, b, g in zip(ours, theirs, src):
                a.grad, b.grad = g.to(device, copy=True), g.to(device, copy=True)
            extra = [make_param((3,), torch.float32, device, grad=False), make_param((0,), dtypes[-1], device)]
            total = trainops.clip_grad_norm_(ours + extra, max_norm, p)  # (torch's inf-norm refuses the empty grad)
            want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, p)
            assert math.isnan(want) if "nan" in bad else math.isinf(want)
            assert (math.isnan(total) and math.isnan(want)) or float(total) == float(want), (p, total, want)
            assert extra[0].grad is None and extra[1].grad.shape == (0,)
            for a, b in zip(ours, theirs):
                nan = b.grad.isnan()
                assert torch.equal(a.grad.isnan(), nan), (p, max_norm, a.grad.dtype)
                assert torch.equal(a.grad[~nan].view(torch.uint8), b.grad[~nan].view(torch.uint8)), (p, max_norm, a.grad.dtype)
            if bad == "inf" and p == 2.0:  # the test's own premise: an inf total zeroes grads, keeping signs
                assert torch.equal(torch.signbit(ours[0].grad[:5]).cpu(), torch.signbit(src[0][:5]))
                assert not ours[0].grad[~ours[0].grad.isnan()].any()
    # The same through get_total_norm + clip_grads_with_norm_ (a non-finite total_norm argument).
    ours = [make_param(g.shape, g.dtype, device, grad=False) for g in src]
    theirs = [make_param(g.shape, g.dtype, device, grad=False) for g in src]
    for a, b, g in zip(ours, theirs, src):
        a.grad, b.grad = g.to(device, copy=True), g.to(device, copy=True)
    total = trainops.get_total_norm([q.grad for q in ours])
    trainops.clip_grads_with_norm_(ours, 1.0, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.0, total)
    for a, b in zip(ours, theirs):
        nan = b.grad.isnan()
        assert torch.equal(a.grad.isnan(), nan) and torch.equal(a.grad[~nan].view(torch.uint8), b.grad[~nan].view(torch.uint8))


def test_fp16_total_is_float32_where_torch_overflows():
    g = torch.full((100,), 10000.0, dtype=torch.float16)
    assert torch.nn.utils.get_total_norm([g]).isinf()
    ours = trainops.get_total_norm([g])
    assert ours.dtype == torch.float32 and rel_err(ours, 1e5) <= 1e-6


@pytest.mark.parametrize("device", device_params())
def test_grad_norms_per_parameter(device):
    gen = torch.Generator().manual_seed(11)
    params = [make_param(s, d, device, gen=gen) for s, d in [((3, 4), torch.float32), ((0,), torch.float16), ((70000,), torch.bfloat16)]]
    params.insert(1, make_param((2,), torch.float32, device, grad=False))
    for p in NORM_TYPES:
        norms = trainops.grad_norms(params, p)
        assert norms.dtype == torch.float32 and norms.shape == (3,) and norms.device.type == device
        want = [reference.tensor_norm64(q.grad, p) for q in params if q.grad is not None]
        for got, w in zip(norms, want):
            assert rel_err(got, w) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(max_norm=-1.0), ValueError, "max_norm"),
        (dict(max_norm=math.nan), ValueError, "max_norm"),
        (dict(max_norm=1.0, norm_type=0.0), ValueError, "norm_type"),
        (dict(max_norm=1.0, norm_type=-2.0), ValueError, "norm_type"),
        (dict(max_norm=1.0, norm_type=-math.inf), ValueError, "norm_type"),
        (dict(max_norm=1.0, norm_type=math.nan), ValueError, "norm_type"),
    ],
)
@pytest.mark.parametrize("device", device_params())
def test_bad_arguments_raise_before_touching_grads(device, kwargs, exc, match):
    params = [make_param((10,), torch.float32, device) for _ in range(2)]
    before = [q.grad.clone() for q in params]
    with pytest.raises(exc, match=match):
        trainops.clip_grad_norm_(params, **kwargs)
    for q, b in zip(params, before):
        assert torch.equal(q.grad, b)


@pytest.mark.parametrize("device", device_params())
def test_bad_tensors_raise_before_touching_grads(device):
    good = make_param((10,), torch.float32, device)
    for bad_grad, exc, match in [
        (torch.arange(4, device=device), TypeError, "dtype"),
        (torch.randn(4, dtype=torch.complex64, device=device), TypeError, "dtype"),
        (torch.randn(4, 4, device=device).to_sparse(), TypeError, "sparse"),
        (torch.empty(4, device="meta"), ValueError, "meta"),
    ]:
        before = good.grad.clone()
        with pytest.raises(exc, match=match):
            trainops.get_total_norm([good.grad, bad_grad])
        bad = torch.zeros(bad_grad.shape, dtype=bad_grad.dtype, device=bad_grad.device)
        bad.grad = bad_grad
        for fn in (lambda: trainops.clip_grad_norm_([good, bad], 1.0), lambda: trainops.clip_grad_value_([good, bad], 0.01)):
            with pytest.raises(exc, match=match):
                fn()
            assert torch.equal(good.grad, before)
    with pytest.raises(ValueError, match="clip_value"):
        trainops.clip_grad_value_([good], -1.0)
    with pytest.raises(ValueError, match="clip_value"):
        trainops.clip_grad_value_([good], math.nan)


def test_op_level_validation():
    with pytest.raises(op_error(ValueError), match="norm_type"):
        torch.ops.trainops.multi_tensor_norm([torch.randn(3)], -1.0, False)
    with pytest.raises(op_error(TypeError), match="dtype"):
        torch.ops.trainops.multi_tensor_norm([torch.arange(3)], 2.0, False)
    with pytest.raises(op_error(ValueError), match="max_norm"):
        torch.ops.trainops.multi_tensor_clip_scale_([torch.randn(3)], torch.tensor(1.0), -1.0)
    with pytest.raises(op_error(ValueError), match="clip_value"):
        torch.ops.trainops.multi_tensor_clamp_([torch.randn(3)], -1.0)


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA device")
def test_mixed_devices_in_one_op_call_rejected():
    with pytest.raises(op_error(ValueError), match="one device"):
        torch.ops.trainops.multi_tensor_norm([torch.randn(3, device="cuda"), torch.randn(3)], 2.0, False)


def test_opcheck_all_ops():
    tensors = [torch.randn(100), torch.randn(10, 10).half(), torch.randn(5).double(), torch.empty(0)]
    cases = [
        (torch.ops.trainops.multi_tensor_norm.default, (tensors, 2.0, True)),
        (torch.ops.trainops.multi_tensor_norm.default, (tensors, math.inf, False)),
        (torch.ops.trainops.multi_tensor_clip_scale_.default, (tensors, torch.tensor(100.0), 1.0)),
        (torch.ops.trainops.multi_tensor_clamp_.default, (tensors, 0.5)),
        (torch.ops.trainops.multi_tensor_clip_grad_norm_.default, (tensors, 1.0, 2.0)),
    ]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in result.values()), result


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    model(torch.randn(8, 16)).pow(2).sum().backward()
    params = list(model.parameters())
    ref = [q.grad.clone() for q in params]

    @torch.compile(fullgraph=True)
    def step(ps):
        total = trainops.clip_grad_norm_(ps, 0.1)
        trainops.clip_grad_value_(ps, 0.05)
        return total, trainops.grad_norms(ps)

    total, norms = step(params)
    want = reference.total_norm(ref, 2.0)
    assert rel_err(total, want) <= 1e-6
    coef = 0.1 / (float(want) + 1e-6)
    for q, r in zip(params, ref):
        torch.testing.assert_close(q.grad, (r * coef).clamp(-0.05, 0.05), rtol=1e-5, atol=1e-7)
    assert norms.shape == (len(params),)


def _small_model_grads(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    model(torch.randn(8, 16)).pow(2).sum().backward()
    return list(model.parameters())


def test_tensor_thresholds_in_eager():
    # A CPU tensor is read and checked like a number: the same values as the float.
    ours, floats, ref = _small_model_grads(0), _small_model_grads(0), _small_model_grads(0)
    total = trainops.clip_grad_norm_(ours, torch.tensor(0.1))
    assert torch.equal(total, trainops.clip_grad_norm_(floats, 0.1))
    torch.nn.utils.clip_grad_norm_(ref, torch.tensor(0.1))
    trainops.clip_grad_value_(ours, torch.tensor([0.01], dtype=torch.float64))
    trainops.clip_grad_value_(floats, 0.01)
    torch.nn.utils.clip_grad_value_(ref, 0.01)
    for a, b, r in zip(ours, floats, ref):
        assert torch.equal(a.grad, b.grad)
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-6, atol=0)
    for bad, error in ((torch.tensor(-1.0), "non-negative"), (torch.tensor(float("nan")), "non-negative"),
                       (torch.ones(2), "one-element"), (torch.tensor(1 + 1j), "one-element")):
        before = [q.grad.clone() for q in ours]
        with pytest.raises(ValueError, match=error):
            trainops.clip_grad_norm_(ours, bad)
        with pytest.raises(ValueError, match=error):
            trainops.clip_grad_value_(ours, bad)
        assert all(torch.equal(q.grad, b) for q, b in zip(ours, before))


def test_tensor_threshold_path_checks_every_grad_before_writing():
    # The path a threshold kept as a tensor takes (an accelerator, or under
    # compile): torch ops per device, after the same checks as the fused path.
    from trainops import clip as clip_mod

    a = torch.full((4,), 3.0)
    bad = torch.ones(1).expand(4)  # shares memory: refused
    for call in (lambda: clip_mod._scale_by_norm([a, bad], torch.tensor(0.3), torch.tensor(3.0)),
                 lambda: trainops.clip_grad_value_([_param_with(a), _param_with(bad)], torch.tensor(0.5).to("meta"))):
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            call()
        assert torch.equal(a, torch.full((4,), 3.0))
    clip_mod._scale_by_norm([a], torch.tensor(0.3), torch.tensor(3.0))
    torch.testing.assert_close(a, torch.full((4,), 3.0 * 0.3 / (3.0 + 1e-6)))


def _param_with(grad):
    p = torch.nn.Parameter(torch.zeros(grad.shape))
    p.grad = grad
    return p


def test_tensor_thresholds_under_torch_compile():
    # A clip schedule as a tensor traces with fullgraph=True (reading it as a
    # float would guard on data) and compiles once for every value.
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")

    @torch.compile(backend=counter, fullgraph=True)
    def step(ps, max_norm, clip_value):
        total = trainops.clip_grad_norm_(ps, max_norm)
        trainops.clip_grad_value_(ps, clip_value)
        return total

    for i, max_norm in enumerate((0.1, 0.2, 1e9)):
        ours, ref = _small_model_grads(i), _small_model_grads(i)
        total = step(ours, torch.tensor(max_norm), torch.tensor(0.05))
        want = torch.nn.utils.clip_grad_norm_(ref, torch.tensor(max_norm))
        torch.nn.utils.clip_grad_value_(ref, torch.tensor(0.05))
        assert rel_err(total, want) <= 1e-5
        for a, r in zip(ours, ref):
            torch.testing.assert_close(a.grad, r.grad, rtol=1e-5, atol=1e-7)
    assert counter.frame_count == 1

    @torch.compile(backend="aot_eager", fullgraph=True)
    def value_step(ps, clip_value):
        trainops.clip_grad_value_(ps, clip_value)

    ours, ref = _small_model_grads(4), _small_model_grads(4)
    value_step(ours, torch.tensor(True))  # a bool threshold reads as 1.0, as in torch
    torch.nn.utils.clip_grad_value_(ref, torch.tensor(True))
    assert all(torch.equal(a.grad, r.grad) for a, r in zip(ours, ref))

    @torch.compile(backend="aot_eager", fullgraph=True)
    def scale(ps, max_norm, total):
        trainops.clip_grads_with_norm_(ps, max_norm, total)

    ours, ref = _small_model_grads(5), _small_model_grads(5)
    total = trainops.get_total_norm([q.grad for q in ours])
    scale(ours, torch.tensor(0.3), total)
    torch.nn.utils.clip_grads_with_norm_(ref, torch.tensor(0.3), total)
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-6, atol=0)


def test_fallback_for_devices_without_kernel(monkeypatch):
    import trainops.clip as clip_mod

    monkeypatch.setattr(_extension, "CLIP_DEVICES", frozenset())
    monkeypatch.setattr(_extension, "_warned_devices", set())
    params = [make_param((50,), torch.float32, "cpu") for _ in range(3)]
    grads = [q.grad.clone() for q in params]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        total = trainops.clip_grad_norm_(params, 0.5)
        trainops.clip_grad_norm_(params, 0.5)
        trainops.clip_grad_value_(params, 0.01)
    fallback_warnings = [w for w in caught if "falling back to torch.nn.utils" in str(w.message)]
    assert len(fallback_warnings) == 1
    assert rel_err(total, reference.total_norm(grads, 2.0)) <= 1e-5


def test_get_total_norm_is_module_function():
    assert get_total_norm is trainops.get_total_norm
    assert set(trainops.clip.__all__) <= set(dir(trainops))


def test_python_api_raises_value_error_for_expanded_grads():
    """The stable-ABI ops raise only RuntimeError; the Python API still raises
    ValueError (and writes nothing) for a gradient that cannot be modified in place."""
    good = torch.nn.Parameter(torch.zeros(5))
    good.grad = torch.full((5,), 3.0)
    bad = torch.nn.Parameter(torch.zeros(4, 3))
    bad.grad = torch.randn(3).expand(4, 3)
    before = good.grad.clone()
    with pytest.raises(ValueError, match="share memory"):
        trainops.clip_grad_norm_([good, bad], 0.1)
    with pytest.raises(ValueError, match="share memory"):
        trainops.clip_grads_with_norm_([good, bad], 0.1, torch.tensor(100.0))
    with pytest.raises(ValueError, match="share memory"):
        trainops.clip_grad_value_([good, bad], 0.1)
    assert torch.equal(good.grad, before)


def test_python_api_raises_type_error_with_a_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        with pytest.raises(TypeError, match="dtype"):
            get_total_norm([torch.randn(3), torch.arange(3)], process_group=dist.group.WORLD)
        total = get_total_norm([torch.full((4,), 2.0)], process_group=dist.group.WORLD)
        assert total.item() == pytest.approx(4.0)
    finally:
        dist.destroy_process_group()


def test_clip_grad_value_refuses_partial_dtensor_grads(tmp_path):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        p = torch.nn.Parameter(DTensor.from_local(torch.zeros(4), mesh, [Replicate()]))
        p.grad = DTensor.from_local(torch.full((4,), 5.0), mesh, [Partial()])
        with pytest.raises(ValueError, match="Partial"):
            trainops.clip_grad_value_([p], 1.0)
        assert torch.equal(p.grad.to_local(), torch.full((4,), 5.0))
        p.grad = DTensor.from_local(torch.full((4,), 5.0), mesh, [Replicate()])
        trainops.clip_grad_value_([p], 1.0)
        assert torch.equal(p.grad.to_local(), torch.full((4,), 1.0))
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------
# Autograd bookkeeping: in-place writes bump the version counter, as torch's do
# ---------------------------------------------------------------------------

_IN_PLACE_CALLS = {
    "clip_grad_norm_": lambda m, p: m.clip_grad_norm_([p], 1.0),
    "clip_grad_norm_ (no clipping needed)": lambda m, p: m.clip_grad_norm_([p], 100.0),
    "clip_grads_with_norm_": lambda m, p: m.clip_grads_with_norm_([p], 1.0, torch.tensor(5.0)),
    "clip_grad_value_": lambda m, p: m.clip_grad_value_([p], 1.0),
}


@pytest.mark.parametrize("call", list(_IN_PLACE_CALLS), ids=str)
@pytest.mark.parametrize("module", [torch.nn.utils, trainops], ids=["torch", "trainops"])
def test_in_place_writes_bump_the_version_counter(module, call):
    """A graph that saved a tensor sharing the grad's version counter (here the
    tensor the grad was detached from) must fail at backward, not silently
    differentiate through the clipped values. torch's in-place ops bump the
    counter even when they leave the values unchanged; so does trainops."""
    g = torch.tensor([3.0, 4.0], requires_grad=True)
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = g.detach()
    y = (g * g).sum()
    before = p.grad._version
    _IN_PLACE_CALLS[call](module, p)
    assert p.grad._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_many_grads_all_bumped():
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (0, 1, 5, 70_000)]
    for q in params:
        q.grad = torch.ones_like(q)
    before = [q.grad._version for q in params]
    trainops.clip_grad_norm_(params, 0.5)
    assert all(q.grad._version > b for q, b in zip(params, before))


def test_fp32_norm_accuracy_when_every_addition_rounds_up():
    # Blocks whose fp32 lane sums round the same way at every addition: the
    # error grows with the additions between folds into fp64 (64 gave 3.75e-6).
    for p, small in ((1.0, np.float32(2.0**-24 * 1.001)), (2.0, np.float32(math.sqrt(2.0**-24 * 1.001)))):
        block = np.full(1024, small, dtype=np.float32)
        block[:16] = 1.0
        x = torch.from_numpy(np.tile(block, 64))
        got = torch.ops.trainops.multi_tensor_norm([x], p, False)[0]
        assert rel_err(got, reference.total_norm([x], p)) <= 1e-6, p


def test_fp16_subnormals_with_flush_denormal():
    # A denormals-are-zero mode must not turn fp16 subnormals into 0: their
    # fp32 values are normal numbers.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-denormal mode")
    try:
        x = torch.full((100,), 3e-6, dtype=torch.float16)
        assert rel_err(trainops.get_total_norm([x]), reference.total_norm([x], 2.0)) <= 1e-6
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
        p.grad = torch.tensor([0.5, -0.5, 1e-3], dtype=torch.float16)
        ref = p.grad.clone()
        trainops.clip_grad_value_([p], 1e-6)
        ref.clamp_(-1e-6, 1e-6)  # torch rounds the bounds to fp16 (subnormals)
        assert torch.equal(p.grad, ref) and p.grad.abs().min() > 0
    finally:
        torch.set_flush_denormal(False)


# ---------------------------------------------------------------------------
# Eighteenth session: found by a review against torch.nn.utils
# ---------------------------------------------------------------------------


def _functional_step(module, max_norm=0.2, clip_value=0.05):
    def step(g):
        g = g.clone()
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=g.dtype))
        p.grad = g
        module.clip_grad_norm_([p], max_norm)
        module.clip_grad_value_([p], clip_value)
        module.clip_grads_with_norm_([p], 0.01, torch.tensor(1.0))
        return g

    return step


def test_torch_func_functionalize_of_the_in_place_functions_matches_torch():
    # C++ functionalization has no rule for a custom op that mutates a list:
    # the in-place functions take torch's ops under it, as torch.nn.utils does.
    from torch.func import functionalize

    x = torch.randn(5, generator=torch.Generator().manual_seed(0)) * 3
    want = functionalize(_functional_step(torch.nn.utils))(x)
    got = functionalize(_functional_step(trainops))(x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    gm = torch.fx.experimental.proxy_tensor.make_fx(functionalize(_functional_step(trainops)))(x)
    torch.testing.assert_close(gm(x), want, rtol=1e-6, atol=0)


def test_vmap_over_norms_and_clipping_matches_torch():
    # Per-sample norms (DP-SGD style): no batching rule for the fused ops, so torch's ops run.
    from torch.func import vmap

    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
    for p in (2.0, 1.0, math.inf, 0.5):
        want = vmap(lambda t: torch.nn.utils.get_total_norm([t], p, foreach=False))(x)
        torch.testing.assert_close(vmap(lambda t: trainops.get_total_norm([t], p))(x), want, rtol=1e-6, atol=0)

    def clip_each(module):
        def f(t):
            p = torch.nn.Parameter(torch.zeros_like(t))
            p.grad = t.clone()
            total = module.clip_grad_norm_([p], 1.0, foreach=False)
            return p.grad, total

        return f

    g_want, t_want = vmap(clip_each(torch.nn.utils))(x)
    g_got, t_got = vmap(clip_each(trainops))(x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=0)
    torch.testing.assert_close(t_got, t_want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize(
    "dtype, beyond", [(torch.float16, 65504.5), (torch.float16, 65519.0), (torch.bfloat16, 3.39e38), (torch.float32, 3.4028235e38 * (1 + 2e-8))]
)
def test_clip_value_just_beyond_the_dtype_range_clamps_nothing(device, dtype, beyond):
    # Rounded to nearest the bound would be the dtype's max, turning +-inf into finite values.
    g = torch.tensor([math.inf, -math.inf, 1.0, math.nan], dtype=dtype, device=device)
    p = torch.nn.Parameter(torch.zeros_like(g))
    p.grad = g.clone()
    trainops.clip_grad_value_([p], beyond)
    assert torch.equal(p.grad.view(torch.uint8 if dtype != torch.float32 else torch.int32), g.view(torch.uint8 if dtype != torch.float32 else torch.int32))


def test_fallback_clip_value_beyond_a_dtype_range_clamps_nothing_of_it(monkeypatch):
    # Devices without a kernel (or no extension): torch's clamp_ would raise for
    # the fp16 tensor after clamping the fp32 one.
    monkeypatch.setattr(_extension, "CLIP_DEVICES", frozenset())
    monkeypatch.setattr(_extension, "_warned_devices", set())
    a = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([1e6, -1e6, 1.0])
    b = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    b.grad = torch.tensor([1.0, 2.0, math.inf], dtype=torch.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainops.clip_grad_value_([a, b], 1e5)
    assert torch.equal(a.grad, torch.tensor([1e5, -1e5, 1.0]))
    assert torch.equal(b.grad, torch.tensor([1.0, 2.0, math.inf], dtype=torch.float16))


@pytest.mark.parametrize(
    "bad",
    [
        lambda: torch.randn(3).to_sparse(),  # TypeError
        lambda: torch.ones(1).expand(3),  # ValueError: elements share memory
    ],
    ids=["sparse", "expanded"],
)
@pytest.mark.parametrize("call", ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_"])
def test_a_refused_call_bumps_no_version_counter(bad, call):
    # A caller that catches the error and goes on must not get a spurious
    # "modified by an inplace operation" at backward (torch raises before any bump).
    a = torch.randn(3, requires_grad=True)
    z = (a * a).sum()
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = a.detach()  # shares a's version counter
    q = torch.nn.Parameter(torch.zeros(3))
    q.grad = bad()
    run = {
        "clip_grad_norm_": lambda: trainops.clip_grad_norm_([p, q], 1.0),
        "clip_grad_value_": lambda: trainops.clip_grad_value_([p, q], 0.1),
        "clip_grads_with_norm_": lambda: trainops.clip_grads_with_norm_([p, q], 1.0, torch.tensor(10.0)),
    }[call]
    with pytest.raises((TypeError, ValueError)):
        run()
    assert p.grad._version == 0
    z.backward()  # no spurious in-place error
