"""``trainops bench``: trainops against torch.nn.utils / torch.nn.init on the local device.

Gradient sets (realistic shapes, random values):

  gpt2        GPT-2 small: 124M parameters in 148 tensors
  resnet50    ResNet-50: 25.6M parameters in 161 tensors
  1k_x_1k     1,000 tensors of 1,000 elements
  10k_x_100   10,000 tensors of 100 elements
  llama       LLaMA-7B-shaped layers (hidden 4096, MLP 11008, vocab 32000),
              as many as fit in --llama-gb of gradient memory

For each set, dtype and clipping mode, the table shows the median time of
``torch.nn.utils.clip_grad_norm_`` (foreach=True and False), of
``trainops.clip_grad_norm_``, the speedup over torch's faster variant, the
effective bandwidth of trainops (bytes that must move / time) and that as a
fraction of the floor: the same bytes at the read bandwidth of one large
``torch.sum`` pass (plus, when clipping, one in-place pass at the bandwidth of
``mul_``), measured in the same run. "vs 1 norm pass" is trainops' time over one
``torch.linalg.vector_norm`` pass over a buffer of the same bytes.

The times a row compares (torch's, trainops', the references, the floor's
three passes) are medians of calls measured side by side: one call of each per
round, the order rotated every round, so a shared host's changing load falls
on all of them alike; where one of them is fast (< 20 ms), each timed call
follows an untimed call of its own, so all are timed warm
(:func:`side_by_side_ms`). ".grad ms" is measured on its own, after them.

".grad ms" is the Python walk over the parameters that reads each ``.grad``
(``torch.nn.utils`` does it too, and so must any drop-in whose kernels sit
behind the stable ABI, which has no accessor for a tensor's grad). On lists of
thousands of small tensors it is a memory access per object and a fixed part
of every implementation, so "ceiling" = the faster torch time / ".grad ms" is
the most any implementation could gain over torch in that run.

Init cases (``--suite init``): GPT-2 small's 148 parameter tensors initialised
with normal(0, 0.02) and trunc_normal_(0, 0.02, -0.04, 0.04) by one fused
trainops call against a loop of the torch.nn.init function, on the configured
threads and on one thread; the floor is one ``fill_`` pass over the same
tensors (every element written once). "uniform ms" times trainops' uniform over
the same tensors: one Philox4x32-10 word per element and its store, which every
normal or truncated normal value costs too (plus uniform's own three
instructions), so "ceiling" = torch ms / uniform ms is about the most any
transform of those words could gain over torch in that run. On a CPU with
more than one thread, the 1 -> N thread speedup is measured again with the two
thread counts side by side in the same rounds (fill_'s own speedup beside it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch

from . import _extension, clip

CASES = ("gpt2", "resnet50", "1k_x_1k", "10k_x_100", "llama")
_K = TypeVar("_K")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------- shapes


def gpt2_shapes(n_layer: int = 12, d: int = 768, vocab: int = 50257, ctx: int = 1024) -> list[tuple[int, ...]]:
    """Parameter shapes of GPT-2 small (HF Conv1D layout): 148 tensors, 124M elements."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(n_layer):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def resnet50_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-50: 161 tensors, 25.6M elements."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        out_ch = width * 4
        for b in range(blocks):
            shapes += [(width, in_ch, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(out_ch, width, 1, 1), (out_ch,), (out_ch,)]
            if b == 0:
                shapes += [(out_ch, in_ch, 1, 1), (out_ch,), (out_ch,)]
            in_ch = out_ch
    return shapes + [(1000, 2048), (1000,)]


def llama_shapes(budget_bytes: float, elem_size: int) -> list[tuple[int, ...]]:
    """LLaMA-7B-shaped parameters: embeddings plus as many layers as fit the budget."""
    d, ff, vocab = 4096, 11008, 32000
    layer = [(d,), (d, d), (d, d), (d, d), (d, d), (d,), (ff, d), (ff, d), (d, ff)]
    layer_bytes = sum(math.prod(s) for s in layer) * elem_size
    head = [(vocab, d), (d,), (vocab, d)]
    head_bytes = sum(math.prod(s) for s in head) * elem_size
    n_layers = max(1, int((budget_bytes - head_bytes) // layer_bytes))
    return head[:1] + layer * n_layers + head[1:]


def case_shapes(case: str, elem_size: int, llama_gb: float) -> list[tuple[int, ...]]:
    if case == "gpt2":
        return gpt2_shapes()
    if case == "resnet50":
        return resnet50_shapes()
    if case == "1k_x_1k":
        return [(1000,)] * 1000
    if case == "10k_x_100":
        return [(100,)] * 10_000
    if case == "llama":
        return llama_shapes(llama_gb * 2**30, elem_size)
    raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def make_params(shapes: list[tuple[int, ...]], dtype: torch.dtype, device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    """Parameters whose .grad holds N(0, 1e-3) values (the parameters themselves
    are never written, so torch.empty leaves their pages unallocated).

    nn.Parameter, as in a model (reading ``.grad`` costs the same as on a
    plain tensor: 0.95-0.96 against 0.98-0.99 ms over 10,000, same grads).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.empty(s, dtype=dtype, device=device))
        p.grad = (torch.randn(s, generator=gen, device=device, dtype=torch.float32) * 1e-3).to(dtype)
        params.append(p)
    return params


# ----------------------------------------------------------------- timing


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_ms(fn: Callable[[], object], device: str) -> float:
    """Wall time of one call of fn in ms (CUDA events on a GPU)."""
    if device.startswith("cuda"):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def side_by_side_ms(
    fns: dict[_K, Callable[[], object]],
    device: str,
    min_rounds: int = 5,
    budget_s: float = 2.0,
    max_rounds: int = 50,
    before: Callable[[_K], object] | None = None,
    rewarm_below_ms: float = 20.0,
) -> dict[_K, float]:
    """Median wall time in ms of each fn, measured side by side.

    After one warm-up call of each, every round calls each fn once, starting
    one fn later than the round before (A B C, B C A, C A B, ...): on a shared
    host the other tenants' load, which changes from second to second, then
    falls on every fn alike, and no fn always runs first. If any warm-up call
    took less than ``rewarm_below_ms``, every timed call is preceded by an
    untimed call of the same fn (device-synchronised), so that all are timed
    warm, as in a loop of their own calls, and a fast call is not timed in the
    caches and allocator state its neighbour left (a 1,000 x 1k clip timed
    right after torch's took ~1.5x its steady time). Rounds go on until there
    are ``min_rounds`` of them and ``budget_s`` seconds per fn have passed, or
    ``max_rounds``. ``before(key)``, if given, runs untimed before each call
    (e.g. to set the thread count).
    """
    if not fns:
        return {}
    keys = list(fns)

    def call(k: _K) -> float:
        if before is not None:
            before(k)
        return _time_ms(fns[k], device)

    rewarm = min([call(k) for k in keys]) < rewarm_below_ms
    times: dict[_K, list[float]] = {k: [] for k in keys}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() - start < budget_s * len(keys) and rounds < max_rounds):
        shift = rounds % len(keys)
        for k in keys[shift:] + keys[:shift]:
            if rewarm:
                call(k)
            times[k].append(call(k))
        rounds += 1
    return {k: statistics.median(v) for k, v in times.items()}


def grad_walk_ms(params: list[torch.nn.Parameter], max_norm: Callable[[], float], device: str, reps: int = 30) -> float:
    """Median host time of the Python walk that reads every ``.grad``, timed
    inside calls that go on to clip (the walk, then the fused op, as in
    ``clip_grad_norm_``): alone in a tight loop its objects stay in cache and
    it looks up to 2x cheaper than it is there."""
    fused = _extension.LOADED and torch.device(device).type in _extension.CLIP_DEVICES
    times: list[float] = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        grads = [g for p in params if (g := p.grad) is not None]
        t1 = time.perf_counter()
        if fused:
            torch.ops.trainops.multi_tensor_clip_grad_norm_(grads, max_norm(), 2.0)
        else:  # torch's operations (trainops' fallback), which walk the grads again
            clip.clip_grad_norm_(params, max_norm())
        _sync(device)
        if i:
            times.append((t1 - t0) * 1e3)
    return statistics.median(times)


@dataclass
class Floor:
    read_gbs: float
    write_gbs: float
    rw_gbs: float  # in-place read-modify-write, bytes read + written


def measure_floor(device: str, nbytes: int) -> Floor:
    """Read (torch.sum), write (fill_) and in-place read+write (mul_) bandwidth
    over a buffer of >= 256 MiB."""
    n = max(nbytes, 256 * 2**20) // 4
    buf = torch.empty(n, dtype=torch.float32, device=device).normal_()
    ms = side_by_side_ms({"read": buf.sum, "rw": lambda: buf.mul_(1.0), "write": lambda: buf.fill_(1.0)}, device)
    read_ms, rw_ms, write_ms = ms["read"], ms["rw"], ms["write"]
    return Floor(read_gbs=4 * n / read_ms / 1e6, write_gbs=4 * n / write_ms / 1e6, rw_gbs=8 * n / rw_ms / 1e6)


@dataclass
class Row:
    case: str
    dtype: str
    clipping: bool
    tensors: int
    mbytes: float
    torch_foreach_ms: float
    torch_loop_ms: float
    trainops_ms: float
    speedup: float
    gbs: float
    pct_floor: float
    vs_norm_pass: float
    grads_ms: float
    ceiling: float


def run_case(case: str, dtype_name: str, clipping: bool, device: str, floor: Floor, llama_gb: float) -> Row:
    dtype = DTYPES[dtype_name]
    elem = torch.empty(0, dtype=dtype).element_size()
    params = make_params(case_shapes(case, elem, llama_gb), dtype, device)
    grads = [p.grad for p in params]
    nbytes = sum(g.numel() for g in grads) * elem
    # Triggered: each call asks for a norm 0.1% below the current one, so every
    # call scales (all elements written) while the values barely drift.
    state = {"norm": float(clip.get_total_norm(grads))}

    def max_norm() -> float:
        if not clipping:
            return state["norm"] * 10
        state["norm"] *= 0.999
        return state["norm"]

    flat = torch.empty(nbytes // elem, dtype=dtype, device=device).normal_()  # the norm-pass reference
    fns = {
        "torch_foreach": lambda: torch.nn.utils.clip_grad_norm_(params, max_norm(), foreach=True),
        "torch_loop": lambda: torch.nn.utils.clip_grad_norm_(params, max_norm(), foreach=False),
        "trainops": lambda: clip.clip_grad_norm_(params, max_norm()),
        "norm_pass": lambda: torch.linalg.vector_norm(flat),
    }
    ms = side_by_side_ms(fns, device)
    del flat
    grads_ms = grad_walk_ms(params, max_norm, device)
    norm_pass_ms = ms["norm_pass"]
    moved = 3 * nbytes if clipping else nbytes  # read; or read + read-and-write
    floor_s = nbytes / (floor.read_gbs * 1e9)  # one read pass
    if clipping:
        floor_s += 2 * nbytes / (floor.rw_gbs * 1e9)  # plus one in-place scale pass
    ours = ms["trainops"]
    return Row(
        case=case,
        dtype=dtype_name,
        clipping=clipping,
        tensors=len(grads),
        mbytes=nbytes / 1e6,
        torch_foreach_ms=ms["torch_foreach"],
        torch_loop_ms=ms["torch_loop"],
        trainops_ms=ours,
        speedup=min(ms["torch_foreach"], ms["torch_loop"]) / ours,
        gbs=moved / (ours * 1e6),
        pct_floor=100 * floor_s * 1e3 / ours,
        vs_norm_pass=ours / norm_pass_ms,
        grads_ms=grads_ms,
        ceiling=min(ms["torch_foreach"], ms["torch_loop"]) / grads_ms,
    )


@dataclass
class InitRow:
    case: str
    dtype: str
    threads: int
    mbytes: float
    torch_ms: float
    trainops_ms: float
    fill_ms: float
    speedup: float
    gbs: float
    pct_floor: float
    uniform_ms: float
    ceiling: float


def _init_case(dist_name: str, dtype_name: str, device: str):
    """(bytes, torch loop, trainops call, fill_ loop, trainops uniform call) of one init case over GPT-2's parameters."""
    from . import init as tinit

    params = [torch.empty(s, dtype=DTYPES[dtype_name], device=device) for s in gpt2_shapes()]
    nbytes = sum(p.numel() for p in params) * params[0].element_size()
    if dist_name == "normal":
        spec = tinit.InitSpec.normal(0.0, 0.02)

        def torch_loop():
            for p in params:
                torch.nn.init.normal_(p, 0.0, 0.02)
    else:
        spec = tinit.InitSpec.trunc_normal(0.0, 0.02, -0.04, 0.04)

        def torch_loop():
            for p in params:
                torch.nn.init.trunc_normal_(p, 0.0, 0.02, -0.04, 0.04)

    keys = list(range(len(params)))

    def fused(s: tinit.InitSpec) -> Callable[[], object]:
        """One fused trainops call initialising every parameter with s."""
        specs = [s] * len(params)
        return lambda: tinit.init_tensors_(params, specs, seed=0, keys=keys)

    ours = fused(spec)
    uniform = fused(tinit.InitSpec.uniform(-0.04, 0.04))

    def fill():
        for p in params:
            p.fill_(1.0)

    return nbytes, torch_loop, ours, fill, uniform


def run_init_case(dist_name: str, dtype_name: str, device: str, threads: int) -> InitRow:
    """One fused trainops init call over GPT-2's parameters vs a torch.nn.init loop."""
    before = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(threads)
    try:
        nbytes, torch_loop, ours, fill, uniform = _init_case(dist_name, dtype_name, device)
        fns = {"torch": torch_loop, "ours": ours, "fill": fill, "uniform": uniform}
        ms = side_by_side_ms(fns, device, min_rounds=3)
        t_ms, o_ms, f_ms, u_ms = ms["torch"], ms["ours"], ms["fill"], ms["uniform"]
    finally:
        torch.set_num_threads(before)
    return InitRow(
        case=f"gpt2 {dist_name}",
        dtype=dtype_name,
        threads=threads if device == "cpu" else 0,
        mbytes=nbytes / 1e6,
        torch_ms=t_ms,
        trainops_ms=o_ms,
        fill_ms=f_ms,
        speedup=t_ms / o_ms,
        gbs=nbytes / (o_ms * 1e6),
        pct_floor=100 * f_ms / o_ms,
        uniform_ms=u_ms,
        ceiling=t_ms / u_ms,
    )


@dataclass
class ScalingRow:
    case: str
    dtype: str
    threads: int
    rounds: int
    one_thread_ms: float
    threads_ms: float
    speedup: float
    fill_speedup: float


def run_thread_scaling(dist_name: str, dtype_name: str, threads: int, rounds: int = 9) -> ScalingRow:
    """The trainops call (and fill_) on 1 thread and on ``threads``, side by
    side (see :func:`side_by_side_ms`), medians of ``rounds`` calls each: on a
    shared host the other tenants' load then falls on both thread counts alike,
    where separate cases measured seconds apart can see different machines.
    fill_'s own scaling in the same rounds shows what the host gave at that
    time."""
    _, _, ours, fill, _ = _init_case(dist_name, dtype_name, "cpu")
    fns = {(name, n): fn for n in (1, threads) for name, fn in (("ours", ours), ("fill", fill))}
    before = torch.get_num_threads()
    try:
        med = side_by_side_ms(
            fns, "cpu", min_rounds=rounds, max_rounds=rounds, before=lambda key: torch.set_num_threads(key[1])
        )
    finally:
        torch.set_num_threads(before)
    return ScalingRow(
        case=f"gpt2 {dist_name}",
        dtype=dtype_name,
        threads=threads,
        rounds=rounds,
        one_thread_ms=med[("ours", 1)],
        threads_ms=med[("ours", threads)],
        speedup=med[("ours", 1)] / med[("ours", threads)],
        fill_speedup=med[("fill", 1)] / med[("fill", threads)],
    )


def format_scaling(rows: list[ScalingRow]) -> str:
    lines = []
    for r in rows:
        lines.append(
            f"{r.case} {r.dtype}: 1 -> {r.threads} threads {r.one_thread_ms:.1f} -> {r.threads_ms:.1f} ms = "
            f"{r.speedup:.2f}x (fill_ in the same rounds: {r.fill_speedup:.2f}x)"
        )
    if rows:
        lines.append(
            f"thread scaling: 1 and {rows[0].threads} threads side by side (one call of each per round, the order "
            f"rotated every round), medians of {rows[0].rounds} calls each"
        )
    return "\n".join(lines)


def format_init_table(rows: list[InitRow]) -> str:
    head = (
        f"{'init case':<18} {'dtype':<5} {'threads':>7} {'MB':>7} {'torch ms':>9} {'trainops ms':>11} "
        f"{'speedup':>8} {'GB/s':>6} {'fill_ ms':>8} {'% floor':>8} {'uniform ms':>10} {'ceiling':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.case:<18} {r.dtype:<5} {r.threads or '-':>7} {r.mbytes:>7.1f} {r.torch_ms:>9.1f} "
            f"{r.trainops_ms:>11.1f} {r.speedup:>7.1f}x {r.gbs:>6.1f} {r.fill_ms:>8.1f} {r.pct_floor:>7.0f}% "
            f"{r.uniform_ms:>10.1f} {r.ceiling:>7.1f}x"
        )
    lines.append("torch ms = a loop of torch.nn.init.<fn>_ over the 148 tensors; floor = a loop of fill_ (write once)")
    lines.append("uniform ms = trainops uniform_ over the same tensors: a Philox4x32-10 word per element and its store,")
    lines.append("which every value of the other rows also costs; ceiling = torch ms / uniform ms, about the most")
    lines.append("any transform of those words could gain over torch in that run")
    return "\n".join(lines)


def format_table(rows: list[Row], floor: Floor, device: str) -> str:
    head = (
        f"{'case':<10} {'dtype':<5} {'clip':<4} {'tensors':>7} {'MB':>8} {'torch ms':>9} {'loop ms':>9} "
        f"{'trainops ms':>11} {'speedup':>8} {'GB/s':>7} {'% floor':>8} {'vs 1 norm pass':>15} {'.grad ms':>9} {'ceiling':>8}"
    )
    abi = _extension.build_info().get("abi", "not loaded")
    lines = [
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, trainops {abi} ABI build; "
        f"floor: read {floor.read_gbs:.1f} GB/s (sum), read+write {floor.rw_gbs:.1f} GB/s (mul_), "
        f"write {floor.write_gbs:.1f} GB/s (fill_)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{r.case:<10} {r.dtype:<5} {'yes' if r.clipping else 'no':<4} {r.tensors:>7} {r.mbytes:>8.1f} "
            f"{r.torch_foreach_ms:>9.2f} {r.torch_loop_ms:>9.2f} {r.trainops_ms:>11.2f} {r.speedup:>7.1f}x "
            f"{r.gbs:>7.1f} {r.pct_floor:>7.0f}% {r.vs_norm_pass:>14.2f}x {r.grads_ms:>9.3f} {r.ceiling:>7.0f}x"
        )
    lines.append("torch ms = clip_grad_norm_(foreach=True); loop ms = foreach=False; speedup vs the faster of the two")
    lines.append(
        ".grad ms = the Python walk reading every .grad (part of every implementation); "
        "ceiling = faster torch ms / .grad ms, the most any implementation could gain"
    )
    lines.append(
        "% floor is against the DRAM bandwidth of a 256 MiB pass: sets that fit in cache (1k_x_1k, 10k_x_100: "
        "4 MB) can pass 100%"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", default=None, help=f"comma list of {', '.join(CASES)} (default: all of them)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16 (default: fp32,bf16)")
    parser.add_argument("--clip", default="both", choices=("both", "yes", "no"), help="clipping triggered or not (default: both)")
    parser.add_argument("--device", default="auto", help="auto (the default: cuda if available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument(
        "--llama-gb", type=float, default=None,
        help=f"gradient memory for the llama case in GiB (default: {LLAMA_CPU_GB:g} on the CPU, a quarter of the "
        f"free GPU memory up to {LLAMA_GPU_MAX_GB:g} on CUDA)",
    )
    parser.add_argument(
        "--suite", default=None, choices=("all", "clip", "init"),
        help="which benchmarks (default: all, or only clip when --cases picks gradient sets)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows, the floor and the build as JSON")
    parser.add_argument(
        "--allow-fallback", action="store_true",
        help="run even when the trainops extension has no kernel for the device (the trainops column then "
        "times the pure-PyTorch fallback, and says so)",
    )
    parser.set_defaults(func=run)


# The llama case's default size: on the CPU a fixed 4 GiB keeps `make bench`
# within minutes on a 2-core machine; on a GPU, as large as memory allows
# (a quarter of the free memory: the case holds the grads and one flat copy).
LLAMA_CPU_GB = 4.0
LLAMA_GPU_MAX_GB = 32.0
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _llama_gb(requested: float | None, device: str) -> float:
    if requested is not None:
        return requested
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return min(LLAMA_GPU_MAX_GB, free / 4 / 2**30)
    return LLAMA_CPU_GB


def _error(message: str) -> int:
    print(f"trainops bench: {message}", file=sys.stderr)
    return 2


def _build_record(device: str, fallback: bool) -> dict:
    from .version import __version__

    return {
        "trainops": __version__,
        "extension_loaded": _extension.LOADED,
        "load_error": _extension.LOAD_ERROR,
        "build_info": _extension.build_info(),
        "build_meta": _extension.BUILD_META,
        "trainops_column_is_fallback": fallback,
        "device": device,
    }


def run(args: argparse.Namespace) -> int:
    device = args.device
    if not _DEVICE_RE.match(device):
        return _error(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return _error(f"--device {device}, but torch sees no CUDA device")
    if args.threads < 0:
        return _error(f"--threads {args.threads}: expected >= 1 (or 0 for torch's default)")
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = args.suite or ("clip" if args.cases is not None else "all")
    cases = [c for c in (args.cases if args.cases is not None else ",".join(CASES)).split(",") if c]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for name in cases:
        if name not in CASES:
            return _error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
    for name in dtypes:
        if name not in DTYPES:
            return _error(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    if suite in ("all", "clip") and not cases:
        return _error("--cases names no gradient set")
    if not dtypes:
        return _error("--dtypes names no dtype")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            return _error(f"--json {args.json}: cannot write in {folder}")
        if os.path.isdir(args.json):
            return _error(f"--json {args.json}: is a directory; give a file name")
        if os.path.exists(args.json) and not os.access(args.json, os.W_OK):
            return _error(f"--json {args.json}: the file is not writable")
    kind = torch.device(device).type
    fallback = (suite != "init" and kind not in _extension.CLIP_DEVICES) or (
        suite != "clip" and kind not in _extension._devices_with_kernel("init_tensors_")
    )
    if fallback and not args.allow_fallback:
        reason = _extension.LOAD_ERROR or f"the extension has no kernel for {kind} tensors"
        return _error(
            f"{reason}, so the trainops column would time the pure-PyTorch fallback; {_extension.REBUILD_HINT} "
            "(or pass --allow-fallback)"
        )
    llama_gb = _llama_gb(args.llama_gb, device)
    modes = {"both": [False, True], "yes": [True], "no": [False]}[args.clip]
    rows: list[Row] = []
    init_rows: list[InitRow] = []
    scaling_rows: list[ScalingRow] = []
    floor = None
    if fallback:
        print("NOTE: no trainops kernel for this device: the trainops column times the pure-PyTorch fallback")
    if suite in ("all", "clip"):
        if "llama" in cases:
            smallest = sum(math.prod(s) for s in llama_shapes(0, 1))  # embeddings, head and one layer
            for name in dtypes:
                need = smallest * torch.empty(0, dtype=DTYPES[name]).element_size() / 2**30
                if need > llama_gb:
                    print(f"note: the llama case holds at least one layer: {need:.2f} GiB in {name}, more than "
                          f"--llama-gb {llama_gb:g}", file=sys.stderr)
        print(f"measuring the bandwidth floor on {device} ...", file=sys.stderr, flush=True)
        floor = measure_floor(device, 256 * 2**20)
        todo = [(c, d, m) for c in cases for d in dtypes for m in modes]
        for i, (case, dtype_name, clipping) in enumerate(todo, 1):
            print(f"[clip {i}/{len(todo)}] {case} {dtype_name} clip={'yes' if clipping else 'no'}", file=sys.stderr, flush=True)
            rows.append(run_case(case, dtype_name, clipping, device, floor, llama_gb))
        print(format_table(rows, floor, device))
    if suite in ("all", "init"):
        n = torch.get_num_threads()
        todo_init = [(dist, d, t) for dist in ("normal", "trunc_normal") for d in dtypes for t in sorted({n, 1}, reverse=True)]
        if device != "cpu":
            todo_init = [(dist, d, 0) for dist, d, t in todo_init if t == n]
        for i, (dist_name, dtype_name, threads) in enumerate(todo_init, 1):
            print(f"[init {i}/{len(todo_init)}] {dist_name} {dtype_name} threads={threads or '-'}", file=sys.stderr, flush=True)
            init_rows.append(run_init_case(dist_name, dtype_name, device, threads or n))
        if device == "cpu" and n > 1:
            for dist_name in ("normal", "trunc_normal"):
                for dtype_name in dtypes:
                    print(f"[init scaling] {dist_name} {dtype_name} 1 <-> {n} threads", file=sys.stderr, flush=True)
                    scaling_rows.append(run_thread_scaling(dist_name, dtype_name, n))
        if rows:
            print()
        print(format_init_table(init_rows))
        if scaling_rows:
            print(format_scaling(scaling_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args) | {"func": None},
                       "build": _build_record(device, fallback),
                       "floor": asdict(floor) if floor else None, "rows": [asdict(r) for r in rows],
                       "init_rows": [asdict(r) for r in init_rows],
                       "thread_scaling": [asdict(r) for r in scaling_rows]}, f, indent=1, default=str)
    return 0
