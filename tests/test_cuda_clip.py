"""CUDA kernels of the clipping ops: same semantics as the CPU kernels.

Every test here needs a GPU and a trainops build with CUDA kernels, and skips
cleanly otherwise. The oracle is float64 math on the same inputs (on the CPU);
the CPU kernels are the reference for the bitwise-defined ops (scale, clamp).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

import trainops
from trainops import _extension
from .conftest import op_error

HAS_CUDA_KERNELS = torch.cuda.is_available() and "cuda" in _extension.CLIP_DEVICES
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA_KERNELS, reason="needs a CUDA GPU and trainops built with its CUDA kernels"),
]

CHUNK = int(_extension.build_info().get("chunk_size", 1 << 16)) if _extension.LOADED else 1 << 16
INF = math.inf
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
NORM_TYPES = [1.0, 2.0, INF, 0.5, 3.0]
# Relative error allowed against the float64 oracle: the 1e-6 target
# for fp32 sums (fp16/bf16 inputs are exact in fp32, so the same holds), and
# fp64 accumulation when every input is fp64.
def rtol_of(tensors: list[torch.Tensor]) -> float:
    """Relative error allowed against the oracle: fp64 only if every input is fp64."""
    return 1e-12 if all(t.dtype == torch.float64 for t in tensors) else 1e-6


norm_op = torch.ops.trainops.multi_tensor_norm
scale_op = torch.ops.trainops.multi_tensor_clip_scale_
clamp_op = torch.ops.trainops.multi_tensor_clamp_


def oracle_norm(tensors: list[torch.Tensor], p: float) -> float:
    """float64 p-norm of the concatenation, computed on the CPU."""
    flat = [t.detach().to("cpu", torch.float64).flatten() for t in tensors]
    x = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64)
    if x.numel() == 0:
        return 0.0
    if math.isinf(p):
        return float(x.abs().max())
    m = float(x.abs().max())
    if m == 0.0 or not math.isfinite(m):
        return float(torch.linalg.vector_norm(x, p))
    # Scale by the max first so that fp64 does not overflow on 1e30-sized values.
    return m * float(((x.abs() / m) ** p).sum()) ** (1.0 / p)


def result_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def assert_close_rel(actual: float, expected: float, rtol: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    elif math.isinf(expected) or expected == 0.0:
        assert actual == expected
    else:
        assert abs(actual - expected) <= rtol * abs(expected), (actual, expected, abs(actual / expected - 1))


def make_list(sizes: list[int], dtypes: list[torch.dtype], seed: int, device: str = "cuda") -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        dtype = dtypes[i % len(dtypes)]
        out.append(torch.randn(n, generator=g, dtype=torch.float64).to(device=device, dtype=dtype))
    return out


def chunk_sizes() -> list[int]:
    return [0, 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3]


# ---------------------------------------------------------------------------
# Norm


@pytest.mark.parametrize("p", NORM_TYPES)
@pytest.mark.parametrize("dtype", DTYPES + ["mixed"])
def test_norm_matches_oracle(dtype, p):
    dtypes = DTYPES if dtype == "mixed" else [dtype]
    tensors = make_list(chunk_sizes() + [1000, 33], dtypes, seed=1)
    total, per = norm_op(tensors, p, True)
    out_dtype = result_dtype(tensors)
    assert total.device.type == "cuda" and total.dim() == 0 and total.dtype == out_dtype
    assert per.shape == (len(tensors),) and per.dtype == out_dtype
    assert_close_rel(float(total), oracle_norm(tensors, p), rtol_of(tensors))
    for t, got in zip(tensors, per.tolist()):
        assert_close_rel(got, oracle_norm([t], p), rtol_of([t]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_unaligned_and_noncontiguous(dtype):
    base = torch.randn(3 * CHUNK + 5, dtype=torch.float64, device="cuda").to(dtype)
    mat = torch.randn(300, 257, dtype=torch.float64, device="cuda").to(dtype)
    tensors = [
        base[1:],  # storage offset: not 16-byte aligned, scalar path
        base[3 : CHUNK + 9],
        mat.t(),  # dense, not contiguous: used in place
        mat[:, ::2],  # strided slice: contiguous copy
    ]
    for p in NORM_TYPES:
        total, per = norm_op(tensors, p, True)
        assert_close_rel(float(total), oracle_norm(tensors, p), rtol_of(tensors))
        for t, got in zip(tensors, per.tolist()):
            assert_close_rel(got, oracle_norm([t], p), rtol_of([t]))


def test_norm_empty_tensors():
    tensors = [torch.empty(0, device="cuda"), torch.empty(0, 3, device="cuda", dtype=torch.float16)]
    for p in NORM_TYPES:
        total, per = norm_op(tensors, p, True)
        assert float(total) == 0.0
        assert per.tolist() == [0.0, 0.0]
    total, per = norm_op(tensors + [torch.full((5,), 2.0, device="cuda")], 2.0, True)
    assert_close_rel(float(total), math.sqrt(20.0), 1e-7)
    assert per.tolist()[:2] == [0.0, 0.0]


def test_norm_per_tensor_flag():
    tensors = make_list([10, 20], [torch.float32], seed=2)
    total, per = norm_op(tensors, 2.0, False)
    assert per.numel() == 0
    total2, _ = norm_op(tensors, 2.0, True)
    assert torch.equal(total, total2)


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_norm_10k_tensors(p):
    rng = random.Random(3)
    sizes = [rng.choice([0, 1, 3, 17, 100, 1000, CHUNK + 1]) if i % 997 == 0 else rng.randint(0, 300) for i in range(10_000)]
    tensors = make_list(sizes, DTYPES, seed=3)
    total, per = norm_op(tensors, p, True)
    out_dtype = result_dtype(tensors)
    assert_close_rel(float(total), oracle_norm(tensors, p), 1e-6)
    cpu_total, cpu_per = norm_op([t.cpu() for t in tensors], p, True)
    torch.testing.assert_close(per.cpu(), cpu_per, rtol=2e-6, atol=0)
    assert per.dtype == out_dtype


def test_norm_more_chunks_than_one_launch():
    # > 2,000 chunks: several stage-1 launches must write disjoint partials.
    tensors = [torch.randn(CHUNK + 1 if i % 500 == 0 else 10, device="cuda") for i in range(4100)]
    total, per = norm_op(tensors, 2.0, True)
    assert_close_rel(float(total), oracle_norm(tensors, 2.0), 1e-6)
    cpu_total, cpu_per = norm_op([t.cpu() for t in tensors], 2.0, True)
    torch.testing.assert_close(per.cpu(), cpu_per, rtol=2e-6, atol=0)


@pytest.mark.parametrize("p", [2.0, INF, 0.5])
def test_norm_tensor_across_launches_is_deterministic(p):
    # A 5-chunk tensor whose chunks fall in two launches (chunks 1998-2002 of a
    # 2,000-chunk launch), empty tensors between, mixed dtypes: whichever block
    # finishes a tensor (TRAINOPS_CUDA_FUSED_FINALIZE), the results must match
    # the oracle and be bitwise the same on every call.
    g = torch.Generator(device="cuda").manual_seed(5)
    shapes = [10] * 1998 + [5 * CHUNK - 3, 0, 7, 0] + [CHUNK] * 3
    dtypes = [torch.float32, torch.bfloat16, torch.float16]
    tensors = [
        torch.randn(n, device="cuda", generator=g).to(dtypes[i % len(dtypes)]) for i, n in enumerate(shapes)
    ]
    total, per = norm_op(tensors, p, True)
    assert_close_rel(float(total), oracle_norm(tensors, p), 1e-6)
    _, cpu_per = norm_op([t.cpu() for t in tensors], p, True)
    torch.testing.assert_close(per.cpu(), cpu_per, rtol=2e-6, atol=0)
    assert float(per[1999]) == 0.0 and float(per[2001]) == 0.0
    for _ in range(20):
        again_total, again_per = norm_op(tensors, p, True)
        assert torch.equal(again_total, total) and torch.equal(again_per, per)


@pytest.mark.parametrize("p", [2.0, INF])
def test_norm_tensor_of_many_chunks(p):
    # 300 chunks in one tensor: more than one partial per thread in the block
    # that combines a tensor's chunks (TRAINOPS_CUDA_FUSED_FINALIZE; 256
    # threads) and more than one round of a warp's combine (the default).
    g = torch.Generator(device="cuda").manual_seed(6)
    tensors = [
        torch.randn(300 * CHUNK - 5, device="cuda", generator=g).to(torch.bfloat16),
        torch.randn(3, device="cuda", generator=g),
    ]
    total, per = norm_op(tensors, p, True)
    assert_close_rel(float(total), oracle_norm(tensors, p), 1e-6)
    _, cpu_per = norm_op([t.cpu() for t in tensors], p, True)
    torch.testing.assert_close(per.cpu(), cpu_per, rtol=2e-6, atol=0)
    again_total, again_per = norm_op(tensors, p, True)
    assert torch.equal(again_total, total) and torch.equal(again_per, per)


@pytest.mark.parametrize("p", NORM_TYPES)
def test_norm_nonfinite(p):
    def run(values, dtype=torch.float32):
        t = torch.tensor(values, dtype=dtype, device="cuda")
        filler = torch.ones(CHUNK + 10, device="cuda", dtype=dtype)
        return float(norm_op([filler, t], p, False)[0])

    assert math.isnan(run([1.0, math.nan]))
    assert math.isnan(run([math.inf, math.nan]))
    assert math.isnan(run([math.nan, -math.inf]))
    assert run([1.0, -math.inf]) == math.inf
    assert math.isnan(run([1.0, math.nan], torch.float16))
    assert run([math.inf], torch.bfloat16) == math.inf


def test_norm_no_spurious_overflow_or_underflow():
    big = torch.full((1000,), 1e30, device="cuda")
    assert_close_rel(float(norm_op([big], 2.0, False)[0]), 1e30 * math.sqrt(1000), 1e-6)
    tiny = torch.full((1000,), 1e-30, device="cuda")
    assert_close_rel(float(norm_op([tiny], 2.0, False)[0]), 1e-30 * math.sqrt(1000), 1e-6)
    half = torch.full((10_000,), 60000.0, device="cuda", dtype=torch.float16)
    total = norm_op([half], 2.0, False)[0]
    assert total.dtype == torch.float32
    assert_close_rel(float(total), 60000.0 * 100.0, 1e-6)
    # One chunk that needs the rescue pass next to ordinary ones.
    mixed = [torch.randn(CHUNK + 3, device="cuda"), big, torch.randn(5, device="cuda", dtype=torch.float64)]
    for p in [1.0, 2.0, 3.0]:
        assert_close_rel(float(norm_op(mixed, p, False)[0]), oracle_norm(mixed, p), 1e-6)


@pytest.mark.parametrize("p", NORM_TYPES)
def test_norm_agrees_with_cpu_kernel(p):
    rng = random.Random(4)
    for trial in range(20):
        sizes = [rng.choice([0, 1, 5, 100, CHUNK - 1, CHUNK + 1, 3000]) for _ in range(rng.randint(1, 12))]
        dtypes = rng.sample(DTYPES, rng.randint(1, 4))
        tensors = make_list(sizes, dtypes, seed=trial)
        total, per = norm_op(tensors, p, True)
        cpu_total, cpu_per = norm_op([t.cpu() for t in tensors], p, True)
        rtol = 2 * rtol_of(tensors)  # both sides are within rtol of the oracle
        torch.testing.assert_close(total.cpu(), cpu_total, rtol=rtol, atol=0)
        torch.testing.assert_close(per.cpu(), cpu_per, rtol=rtol, atol=0)


def test_norm_bitwise_reproducible():
    tensors = make_list([3 * CHUNK + 11, 1000, 0, 77], DTYPES, seed=5)
    first = norm_op(tensors, 2.0, True)
    for _ in range(5):
        again = norm_op(tensors, 2.0, True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


# ---------------------------------------------------------------------------
# Scale and clamp: elementwise, so bitwise equal to the CPU kernels


def clone_keeping_offset(t: torch.Tensor) -> torch.Tensor:
    """A copy of a contiguous tensor at the same storage offset: clone() gives
    a fresh, 16-byte aligned tensor, which would skip the unaligned paths."""
    off = t.storage_offset()
    out = torch.empty(off + t.numel(), dtype=t.dtype, device=t.device)[off:].view(t.shape)
    return out.copy_(t)


@pytest.mark.parametrize("total_dtype", [torch.float32, torch.float64])
def test_clip_scale_matches_cpu(total_dtype):
    tensors = make_list(chunk_sizes() + [123], DTYPES, seed=6)
    tensors.append(torch.randn(CHUNK + 9, device="cuda")[3:])  # unaligned
    for total_value in [0.0, 0.3, 5.0, 1e6, math.inf, math.nan]:
        gpu = [clone_keeping_offset(t) for t in tensors]
        assert gpu[-1].data_ptr() % 16 != 0
        cpu = [t.cpu() for t in tensors]
        total = torch.tensor(total_value, dtype=total_dtype)
        scale_op(gpu, total.cuda(), 1.0)
        scale_op(cpu, total, 1.0)
        for g, c in zip(gpu, cpu):
            torch.testing.assert_close(g.cpu(), c, rtol=0, atol=0, equal_nan=True)


def test_scale_every_16_bit_pattern_like_cpu():
    """Every fp16 and bf16 bit pattern, scaled by coefficients near 1/2, 1/3
    and 1 - 2^-12 (so results land on ties, in the subnormals and next to the
    largest values): the GPU's conversion instructions (cvt, common.h) store
    the CPU code's values, bit for bit, NaNs aside (the GPU's are canonical)."""
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        values = patterns.view(dtype)
        for total_value in (2.0, 3.0, 1.0 + 2.0**-12):
            gpu, cpu = values.cuda(), values.clone()
            scale_op([gpu], torch.tensor(total_value, device="cuda"), 1.0)
            scale_op([cpu], torch.tensor(total_value), 1.0)
            nan = cpu.isnan()
            assert torch.equal(gpu.cpu().isnan(), nan), (dtype, total_value)
            assert torch.equal(gpu.cpu()[~nan].view(torch.int16), cpu[~nan].view(torch.int16)), (dtype, total_value)


def test_clip_scale_writes_nothing_when_coefficient_is_one():
    # GPU arithmetic turns a NaN with a payload into the canonical NaN, so x * 1
    # would change these bit patterns: if they survive, nothing was written.
    payload = torch.tensor([0x7FC00123, -0x80000000, 0x3F800000], dtype=torch.int32)
    t32 = payload.view(torch.float32).repeat(CHUNK + 5).cuda()
    t16 = torch.tensor([0x7E01, -0x8000], dtype=torch.int16).view(torch.float16).repeat(1000).cuda()
    before = [t32.clone(), t16.clone()]
    scale_op([t32, t16], torch.tensor(0.5, device="cuda"), 1.0)
    assert torch.equal(t32.view(torch.int32), before[0].view(torch.int32))
    assert torch.equal(t16.view(torch.int16), before[1].view(torch.int16))


def test_clip_scale_noncontiguous_written_back():
    mat = torch.randn(64, 130, device="cuda")
    view = mat[:, ::2]
    expected = view.cpu().clone()
    scale_op([view], torch.tensor(10.0, device="cuda"), 1.0)
    scale_op([expected], torch.tensor(10.0), 1.0)
    assert torch.equal(view.cpu(), expected)
    assert torch.equal(mat[:, 1::2].cpu(), mat.cpu()[:, 1::2])


@pytest.mark.parametrize("clip_value", [0.0, 0.1, 0.5, 1e-3, 7.0])
def test_clamp_matches_cpu(clip_value):
    tensors = make_list(chunk_sizes() + [99], DTYPES, seed=7)
    specials = torch.tensor([math.nan, math.inf, -math.inf, -0.0, 0.1, -0.1, 1e-3], dtype=torch.float64)
    tensors += [specials.to("cuda", d) for d in DTYPES]
    tensors.append(torch.randn(CHUNK + 9, device="cuda")[1:])  # unaligned
    gpu = [clone_keeping_offset(t) for t in tensors]
    assert gpu[-1].data_ptr() % 16 != 0
    cpu = [t.cpu() for t in tensors]
    clamp_op(gpu, clip_value)
    clamp_op(cpu, clip_value)
    for g, c in zip(gpu, cpu):
        torch.testing.assert_close(g.cpu(), c, rtol=0, atol=0, equal_nan=True)


# ---------------------------------------------------------------------------
# Public API on CUDA


def _params(shapes, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.zeros(s, device="cuda", dtype=dtype))
        p.grad = torch.randn(s, device="cuda", dtype=dtype, generator=g) * scale
        params.append(p)
    return params


@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_torch(max_norm):
    shapes = [(768, 768), (3072,), (0,), (50, 7)]
    ours = _params(shapes, seed=8)
    ref = _params(shapes, seed=8)
    total = trainops.clip_grad_norm_(ours, max_norm)
    ref_total = torch.nn.utils.clip_grad_norm_(ref, max_norm, foreach=True)
    torch.testing.assert_close(total, ref_total, rtol=1e-5, atol=0)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_clip_grad_value_matches_torch():
    ours = _params([(1000,), (CHUNK + 1,)], seed=9)
    ref = _params([(1000,), (CHUNK + 1,)], seed=9)
    trainops.clip_grad_value_(ours, 0.5)
    torch.nn.utils.clip_grad_value_(ref, 0.5)
    for a, b in zip(ours, ref):
        assert torch.equal(a.grad, b.grad)


def test_no_host_sync():
    params = _params([(1000, 100), (CHUNK + 1,), (10,)], seed=10, scale=10.0)
    bf16 = _params([(4000,)], dtype=torch.bfloat16, seed=11)
    trainops.clip_grad_norm_(params, 1.0)  # warm up (lazy init, allocator)
    # Made before the check: torch.tensor(x, device="cuda") copies x from the
    # host with a blocking copy, which the sync-debug mode reports.
    norm_limit = torch.tensor(1.0, device="cuda")
    value_limit = torch.tensor(0.1, device="cuda")
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        total = trainops.clip_grad_norm_(params, 1.0)
        trainops.clip_grad_norm_(bf16, 1.0, norm_type=INF)
        trainops.clip_grad_norm_(params, 1e9, norm_type=3.0)
        trainops.get_total_norm([p.grad for p in params])
        trainops.clip_grads_with_norm_(params, 1.0, total)
        trainops.clip_grads_with_norm_(params, 1.0, 2.5)  # a Python number: filled on the device, not copied
        trainops.clip_grad_value_(params, 0.1)
        trainops.grad_norms(params)
        # device-tensor thresholds (a clip schedule kept on the GPU) are never read on the host
        trainops.clip_grad_norm_(params, norm_limit)
        trainops.clip_grads_with_norm_(params, norm_limit, total)
        trainops.clip_grad_value_(params, value_limit)
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def test_non_default_stream():
    src = [torch.randn(CHUNK + 7, device="cuda"), torch.randn(1000, device="cuda", dtype=torch.bfloat16)]
    expected = oracle_norm(src, 2.0)
    grads = [torch.zeros_like(s) for s in src]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        # Keep the side stream busy, then fill: a kernel launched on any other
        # stream would read the zeros.
        torch.cuda._sleep(50_000_000)
        for g, s in zip(grads, src):
            g.copy_(s)
        total, _ = norm_op(grads, 2.0, False)
        clamp_op(grads, 0.25)
    side.synchronize()
    assert_close_rel(float(total), expected, 1e-6)
    assert all(float(g.abs().max()) <= 0.25 for g in grads)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device_rejected():
    a = torch.randn(10, device="cuda:0")
    b = torch.randn(10, device="cuda:1")
    with pytest.raises(op_error(ValueError), match="one device"):
        norm_op([a, b], 2.0, False)
    with pytest.raises(op_error(ValueError), match="one device"):
        clamp_op([a, b], 1.0)
    with pytest.raises(op_error(ValueError), match="total_norm is on"):
        scale_op([b], torch.tensor(1.0, device="cuda:0"), 1.0)
    # All on the second device: runs there (device guard).
    c = torch.randn(CHUNK + 3, device="cuda:1")
    total, _ = norm_op([c], 2.0, False)
    assert total.device == c.device
    assert_close_rel(float(total), oracle_norm([c], 2.0), 1e-6)


def test_cpu_and_cuda_tensors_rejected():
    with pytest.raises(op_error(ValueError), match="one device"):
        norm_op([torch.randn(3, device="cuda"), torch.randn(3)], 2.0, False)


def test_public_api_over_cpu_and_cuda_grads(monkeypatch):
    # The op refuses a list on two devices; the public API then norms each
    # device's group with one op call (not retrying the whole list) and
    # combines them on the first tensor's device.
    grads = [torch.randn(1000, device="cuda"), torch.randn(300), torch.randn(CHUNK + 1, device="cuda")]
    expected = oracle_norm(grads, 2.0)
    calls = []
    real = torch.ops.trainops.multi_tensor_norm

    class Counting:
        def __call__(self, tensors, *args):
            calls.append(len(tensors))
            return real(tensors, *args)

    monkeypatch.setattr(torch.ops.trainops, "multi_tensor_norm", Counting())
    total = trainops.get_total_norm(grads)
    assert total.device == grads[0].device
    assert_close_rel(float(total), expected, 1e-6)
    assert calls[0] == 3 and calls.count(3) == 1  # the whole list was tried once
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for q, g in zip(params, grads):
        q.grad = g.clone()
    trainops.clip_grad_norm_(params, 1.0)
    assert_close_rel(float(trainops.get_total_norm([q.grad for q in params])), 1.0, 1e-5)


def test_cuda_graph_capture_and_replay():
    params = _params([(512, 300), (CHUNK + 5,), (17,)], seed=12)
    bf16 = _params([(2000,)], dtype=torch.bfloat16, seed=13)
    everything = params + bf16
    static = [p.grad for p in everything]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture
            trainops.clip_grad_norm_(everything, 1.0)
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        total = trainops.clip_grad_norm_(everything, 1.0)

    for seed, scale in [(20, 1e-4), (21, 1.0), (22, 30.0)]:
        fresh = _params([tuple(g.shape) for g in static], seed=seed, scale=scale)
        new = [f.grad.to(g.dtype) for f, g in zip(fresh, static)]
        for g, n in zip(static, new):
            g.copy_(n)
        graph.replay()
        expected_total = trainops.get_total_norm([n.clone() for n in new])
        eager = [n.clone() for n in new]
        trainops.clip_grads_with_norm_([_wrap(e) for e in eager], 1.0, expected_total)
        torch.testing.assert_close(total, expected_total, rtol=0, atol=0)
        for g, e in zip(static, eager):
            assert torch.equal(g, e)


def _wrap(grad: torch.Tensor) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.empty_like(grad))
    p.grad = grad
    return p


def _check_fake_kernels() -> None:
    """The ops' fake kernels (trainops/_fake.py, registered whenever the
    extension loads) give CUDA outputs of the right dtype and shape. A failure
    raises: tests of tracing fail on it instead of skipping (the skip they once
    had dated from before the fake kernels existed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        t = torch.empty(4, device="cuda")
        total, per = norm_op([t, torch.empty(3, device="cuda", dtype=torch.bfloat16)], 2.0, True)
        assert total.device == t.device and total.dtype == torch.float32 and total.dim() == 0
        assert per.device == t.device and per.shape == (2,)
        assert norm_op([t.double()], 2.0, False)[1].shape == (0,)
        assert scale_op([t], torch.empty((), device="cuda"), 1.0) is None
        assert clamp_op([t], 1.0) is None
        fused = torch.ops.trainops.multi_tensor_clip_grad_norm_([t, t.double()], 1.0, 2.0)
        assert fused.device == t.device and fused.dtype == torch.float64 and fused.dim() == 0


def test_fake_kernels():
    _check_fake_kernels()


def test_torch_compile_reduce_overhead():
    """mode="reduce-overhead" must run the step as a CUDA graph. Inductor
    silently falls back to running without one ("skipping cudagraphs due to
    mutated inputs", counted in counters["inductor"]["cudagraph_skips"]) when
    the graph mutates an input without a static address: dynamo makes
    nn.Parameters static, not their .grad (a plain tensor input), so the grads
    are marked here (torch._dynamo.mark_static_address; unguarded: a new
    address re-records). The grads' scale changes every step: a replay that
    did not run (or read stale inputs) gives stale values."""
    from torch._dynamo.utils import counters
    from torch._inductor import cudagraph_trees

    _check_fake_kernels()
    torch._dynamo.reset()
    counters.clear()
    params = _params([(256, 64), (CHUNK + 3,), (9,)], seed=14, scale=5.0)
    src = [p.grad.clone() for p in params]
    for p in params:
        torch._dynamo.mark_static_address(p.grad)

    @torch.compile(fullgraph=True, mode="reduce-overhead")
    def step(ps):
        return trainops.clip_grad_norm_(ps, 1.0)

    # Warm-up, recording, then replays (1e-4: below max_norm, nothing clipped).
    for factor in (1.0, 1e-3, 3.0, 1e-4, 0.05, 2.0):
        for p, s in zip(params, src):
            p.grad.copy_(s * factor)
        total = step(params)
        eager = [_wrap(s * factor) for s in src]
        expected = trainops.clip_grad_norm_(eager, 1.0)
        torch.testing.assert_close(total, expected, rtol=0, atol=0, msg=lambda m: f"factor {factor}: {m}")
        for p, e in zip(params, eager):
            assert torch.equal(p.grad, e.grad), factor
    assert counters["inductor"]["cudagraph_skips"] == 0, dict(counters["inductor"])
    manager = cudagraph_trees.get_manager(torch.cuda.current_device(), create_if_none_exists=False)
    assert manager is not None and any(manager.roots.values()), "no CUDA graph was recorded"


def test_opcheck():
    from torch.library import opcheck

    # Every opcheck utility, the fake-tensor and AOT-dispatch ones included: a
    # broken fake kernel fails here (it used to narrow the check to the schema).
    tensors = [torch.randn(100, device="cuda"), torch.randn(7, device="cuda", dtype=torch.bfloat16)]
    cases = [
        (norm_op, (tensors, 2.0, True)),
        (norm_op, (tensors, INF, False)),
        (scale_op, ([t.clone() for t in tensors], torch.tensor(50.0, device="cuda"), 1.0)),
        (clamp_op, ([t.clone() for t in tensors], 0.5)),
        (torch.ops.trainops.multi_tensor_clip_grad_norm_, ([t.clone() for t in tensors], 1.0, 2.0)),
    ]
    for op, args in cases:
        result = opcheck(op, args)
        assert result and all(v == "SUCCESS" for v in result.values()), (op, result)
