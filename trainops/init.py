"""Counter-based weight initialisation: drop-in for ``torch.nn.init``, fused.

Every function of ``torch.nn.init`` that draws or fills is here with torch's
parameters (including ``generator=``), fans and gains, and so are torch's
deprecated names without the trailing underscore (``xavier_uniform``, ...,
with torch's ``FutureWarning``), so swapping the import is enough::

    from trainops import init
    init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")

What differs is where the numbers come from. Each element's value is a pure
function of ``(seed, key, the element's index in the global tensor,
distribution)`` (Philox4x32-10, see ``csrc/include/trainops/philox.h``), so it
is the same for any thread count, on CPU and CUDA, and for any sharding: a
shard initialised with ``global_shape`` / ``global_offset`` equals the same
slice of the whole tensor. fp16/bf16 values are the fp32 values rounded once
(uniform then caps at the largest 16-bit value below ``b``, keeping torch's
``[a, b)``). DTensors (FSDP2, tensor parallel) are drawn shard by shard the
same way, from their placements.

Extra keyword-only arguments of the drawing functions:

* ``seed``: 64-bit seed (an int, or a one-element integer tensor). When
  omitted it is drawn from ``generator`` (or torch's default CPU generator),
  so ``torch.manual_seed`` controls it and successive calls differ. A draw
  from a CUDA generator stays on the device (the kernel reads it: no sync).
  For a DTensor, the draw of the rank at coordinate 0 of each mesh dimension
  is broadcast along it (one small collective per mesh dimension), so every
  rank of the DTensor's mesh uses the same seed even when the ranks'
  generators are seeded apart, as torch's DTensor random ops share rank 0's
  RNG state. Not under ``torch.compile``, and not beyond that mesh: a DTensor
  replicated over other ranks by other means (DDP over a data-parallel
  dimension outside its mesh) needs those ranks' generators seeded alike, or
  a seed. A DTensor with a ``Partial`` placement, or a strided shard that is
  not one block of the global tensor, is refused (``ValueError`` /
  ``NotImplementedError``).
* ``key``: 64-bit stream key (default 0); tensors that share a seed need
  different keys. :func:`key_of` turns a parameter name into one.
* ``global_shape`` / ``global_offset``: the shard's place in the whole tensor
  (fans then come from the global shape).

Whole models: :func:`plan` says, per parameter, which scheme "auto" (or
"kaiming", "xavier", "gpt2", "torch") picks and why; :func:`init_module_`
applies it in one fused call per device; :func:`materialize_` allocates a model
built on the ``meta`` device and initialises it with exactly the values
:func:`init_module_` gives with the same seed. Their seed is fixed (0) by
default, so separate calls on like-named modules give equal values; pass a
seed per call, or ``seed=None`` to draw it from torch's default generator as
the functions above do. :func:`init_tensors_` is the list entry point.

Deliberate differences from torch.nn.init: the streams are not torch's (same
distributions, different numbers); an fp32 (fp16, bf16) normal is the inverse
CDF of one 32-bit word -- the sign and p in [2^-32, 0.5] -- evaluated as a
degree-9 polynomial per binade of p, within 1.6 ulp of the exact quantile of p
for every fp32 p and non-decreasing, so |x - mean| < 6.24 std; fp64 normals
are Box-Muller on 53-bit uniforms. Truncated normals are drawn in one pass by
inverse CDF (torch takes five), in erf space by the kernel, except for
intervals so far in a tail (or so far from the mean) that fewer than 65,536
erf-space values fall in [a, b]: those take an fp64 inverse CDF
(``torch.special.ndtri``) from the same counter-based uniforms, exact in
distribution but not guaranteed bitwise equal on CPU and CUDA.

Values that are not bitwise equal on CPU and CUDA, and how far apart they can be:

* far-tail ``trunc_normal_`` (above): the uniforms are bitwise equal; the fp64
  transform (``ndtri``, or ``log_ndtr``/``exp``/``log`` in Newton's steps beyond
  30 std) is torch's per device, each within a few fp64 ulp of the exact value,
  and well conditioned there (a relative error e in the probability moves x by
  about e / |x|). So fp32 outputs, rounded once from fp64, are equal except
  when the fp64 value falls within a few fp64 ulp of an fp32 rounding
  boundary, and then differ by 1 fp32 ulp; fp16 and bf16 outputs are those
  fp32 values rounded (as everywhere else), so they differ only where the
  fp32 ones do, by at most 1 ulp of their dtype; fp64 outputs differ by the
  libraries' few ulp. Not measured: no GPU yet.
* ``orthogonal_`` (and "auto"'s recurrent ``weight_hh``): the Gaussian is
  bitwise equal; the QR is LAPACK's on the CPU and cuSOLVER's on a GPU, with
  other blockings and rounding, so Q differs at rounding level, about
  n * eps * ||Q|| elementwise for an n x n block (no fixed ulp bound: it grows
  with the matrix's condition number). Both satisfy W^T W = gain^2 I to the
  dtype's precision.
* spectral_norm's power-iteration vectors after ``init_module_``: unit
  Gaussians bitwise equal, then 15 matrix-vector products per device (as the
  QR). Buffers, not parameters: the weight itself is bitwise equal.
Only float16, bfloat16, float32 and float64 tensors are drawn (``TypeError``
otherwise, where torch also fills complex ones); invalid parameters (a > b,
non-finite bounds or mean, std < 0, uniform bounds beyond the dtype's range)
raise ``ValueError`` before anything is written (and before a seed is drawn),
where torch raises ``RuntimeError`` or accepts some. ``trunc_normal_`` does not
warn when the mean is more than 2 std outside [a, b]: torch's warning is about
its own method's error there, and the values here are exact in distribution.
Writes bump autograd version counters as torch's do, but an inference-mode
tensor is written without torch's error. Under ``torch.compile`` (``fullgraph=True``
too) a seed that is not given is drawn by a random op inside the graph, from
torch's default generator: ``manual_seed`` controls it and calls differ, but
the values are not eager's (as with torch's own random ops under inductor); a
``generator=`` object is read on the host, a graph break. Tensors that hold no data
(meta, or fake under ``FakeTensorMode``) are left alone and draw no seed, as in
torch; the functions above also draw none for a tensor with no element
(:func:`init_tensors_` draws one for a list whatever it holds). Tensor subclasses with their own ``__torch_function__`` are handed every
call of the functions below that write, with the trainops function as ``func``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

import torch
from torch import Tensor, nn
from torch._C._functorch import is_functorch_wrapped_tensor
from torch._subclasses.fake_tensor import is_fake

from . import _extension, distributed

__all__ = [
    "InitPlan",
    "InitSpec",
    "PlanEntry",
    "calculate_gain",
    "constant_",
    "dirac_",
    "eye_",
    "init_module_",
    "init_tensors_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "key_of",
    "materialize_",
    "normal_",
    "ones_",
    "orthogonal_",
    "plan",
    "sparse_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_KINDS = {"uniform": 0, "normal": 1, "trunc_normal": 2, "constant": 3}
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_U64 = (1 << 64) - 1
_INIT_DEVICES: frozenset[str] = _extension._devices_with_kernel("init_tensors_")
# Classes whose instances hold their data themselves (no subclass dispatch,
# never fake): _draw_'s direct path takes only these.
_PLAIN_TYPES = (Tensor, nn.Parameter)

ShapeLike = Union[Sequence[int], torch.Size]


def _register_fake() -> None:
    if not _extension.LOADED:
        return
    try:

        def _init_fake(tensors, kinds, params, seed, keys, global_shapes, global_offsets) -> None:
            for i, t in enumerate(tensors):
                if t.device != tensors[0].device:
                    raise ValueError(
                        "trainops.init_tensors_: all tensors of one call must be on one device, but "
                        f"tensor 0 is on {tensors[0].device} and tensor {i} is on {t.device}"
                    )

        torch.library.register_fake("trainops::init_tensors_")(_init_fake)
        torch.library.register_fake("trainops::init_tensors_.seeded")(_init_fake)

    except RuntimeError:  # already registered (e.g. by trainops._fake)
        pass


_register_fake()


# ---------------------------------------------------------------------------
# Specs, seeds, keys
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InitSpec:
    """One tensor's distribution for :func:`init_tensors_`.

    Attributes:
        kind: "uniform" (a=low, b=high), "normal" (a=mean, b=std),
            "trunc_normal" (a=mean, b=std, c=low bound, d=high bound) or
            "constant" (a=value).
    """

    kind: str
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown distribution {self.kind!r}; expected one of {sorted(_KINDS)}")

    @staticmethod
    def uniform(low: float = 0.0, high: float = 1.0) -> InitSpec:
        return InitSpec("uniform", float(low), float(high))

    @staticmethod
    def normal(mean: float = 0.0, std: float = 1.0) -> InitSpec:
        return InitSpec("normal", float(mean), float(std))

    @staticmethod
    def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> InitSpec:
        return InitSpec("trunc_normal", float(mean), float(std), float(a), float(b))

    @staticmethod
    def constant(value: float) -> InitSpec:
        return InitSpec("constant", float(value))

    def __str__(self) -> str:
        if self.kind == "uniform":
            return f"uniform({self.a:g}, {self.b:g})"
        if self.kind == "normal":
            return f"normal({self.a:g}, {self.b:g})"
        if self.kind == "trunc_normal":
            return f"trunc_normal({self.a:g}, {self.b:g}, [{self.c:g}, {self.d:g}])"
        return f"constant({self.a:g})"


def _as_spec(spec: InitSpec | tuple) -> InitSpec:
    if isinstance(spec, InitSpec):
        return spec
    if isinstance(spec, (tuple, list)) and spec and isinstance(spec[0], str):
        return InitSpec(spec[0], *(float(x) for x in spec[1:]))
    raise TypeError(f"a spec is an InitSpec or a tuple like ('normal', 0.0, 0.02), got {spec!r}")


def _to_i64(x: int) -> int:
    x = int(x) & _U64
    return x - (1 << 64) if x >= (1 << 63) else x


def key_of(name: str) -> int:
    """64-bit stream key of a parameter name (BLAKE2b of the UTF-8 name).

    Keys come from names, not from positions, so results do not depend on the
    order in which modules were constructed.
    """
    return _to_i64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))


def _holds_data(t: Tensor) -> bool:
    if t.device.type == "meta":
        return False
    if type(t) in _PLAIN_TYPES and not torch._is_functional_tensor(t) and not is_functorch_wrapped_tensor(t):
        # is_fake's cases: Python subclasses (FakeTensor, wrappers holding one)
        # and the C++ functional and functorch (grad/vmap) wrappers it unwraps
        return True
    return not is_fake(t)


Seed = Union[int, Tensor]


def _resolve_seed(
    seed: int | Tensor | None,
    generator: torch.Generator | None,
    tensors: Sequence[Tensor] = (),
    dtensors: Sequence[Tensor] = (),
) -> Seed:
    """The seed to draw with: ``seed``, else one drawn from ``generator`` (or
    torch's default one). ``tensors`` that hold no data (meta, or fake under
    FakeTensorMode) draw nothing and, as in torch.nn.init, leave the generator
    alone; the seed is then irrelevant. A drawn seed for ``dtensors`` (the
    DTensors being initialised) is made the same on every rank of their
    meshes (:func:`_agree_seed`).

    A Python int on the host, or a one-element int64 tensor where reading the
    draw back would sync or break a graph: a CUDA generator's draw stays on
    the device (the kernel reads it), and under torch.compile the draw is part
    of the graph. Either way the seed has the same value as the int path's.
    """
    if isinstance(seed, Tensor):
        if seed.numel() != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise TypeError(f"a tensor seed must be one integer element, got {seed.dtype} of shape {tuple(seed.shape)}")
        return seed.reshape(()).to(torch.int64)
    if seed is not None:
        return _to_i64(seed)
    if torch.compiler.is_compiling():
        if generator is not None:  # a generator object is not traceable: draw on the host (a graph break)
            return _draw_seed_outside_graph(generator)
        return _combine_words(torch.randint(0, 1 << 32, (2,), dtype=torch.int64))
    if tensors and not any(map(_holds_data, tensors)):
        return 0
    drawn = _draw_seed(generator if generator is not None else torch.default_generator)
    return _agree_seed(drawn, dtensors) if dtensors else drawn


def _agree_seed(seed: Seed, dtensors: Sequence[Tensor]) -> Seed:
    """Rank 0's seed on every rank of the DTensors' meshes.

    A seed drawn on each rank from its own generator differs when the ranks
    are seeded apart (``torch.manual_seed(base + rank)`` for dropout or data
    order): replicated parameters would then differ between ranks, and shards
    would not be slices of one tensor. As torch's DTensor random ops share
    rank 0's RNG state, the seed of the rank at coordinate 0 of each mesh
    dimension is broadcast along it (one small collective per mesh dimension,
    at initialisation only)."""
    meshes: list[Any] = []
    for t in dtensors:
        if distributed.is_dtensor(t) and all(t.device_mesh is not m for m in meshes):
            meshes.append(t.device_mesh)
    if not meshes or not torch.distributed.is_initialized():
        return seed
    for mesh in meshes:
        if mesh.get_coordinate() is None:  # not in this mesh: it holds nothing of these tensors
            continue
        for dim in range(mesh.ndim):
            group = mesh.get_group(dim)
            if torch.distributed.get_world_size(group) == 1:
                continue
            device = torch.device(mesh.device_type)  # the mesh's (the current CUDA device for "cuda")
            value = seed.reshape(1).to(device) if isinstance(seed, Tensor) else torch.tensor([seed], dtype=torch.int64, device=device)
            torch.distributed.broadcast(value, src=torch.distributed.get_global_rank(group, 0), group=group)
            seed = int(value.item()) if not isinstance(seed, Tensor) else value.reshape(())
    return seed


def _draw_seed(gen: torch.Generator) -> Seed:
    # Two 32-bit draws: torch.randint's bound is exclusive and below 2^63.
    words = torch.randint(0, 1 << 32, (2,), generator=gen, device=gen.device, dtype=torch.int64)
    if words.device.type == "cuda":
        return _combine_words(words)  # stays on the device: no sync
    hi, lo = words.tolist()
    return _to_i64((hi << 32) | lo)


# Under torch.compile with a generator object: run eagerly (a graph break). Not
# used in eager mode, where the disable wrapper would cost more than the draw.
_draw_seed_outside_graph = torch.compiler.disable(_draw_seed)


def _combine_words(words: Tensor) -> Tensor:
    """(hi << 32) | lo of two 32-bit draws, wrapped to int64 as _to_i64 does."""
    return (words[0] << 32) | words[1]


def _seed_int(seed: Seed) -> int:
    """The seed as a Python int (for host-side uses; a device tensor syncs)."""
    return int(seed) if isinstance(seed, Tensor) else seed


def _seed_on(seed: Seed, device: torch.device) -> Seed:
    """A tensor seed where a kernel on ``device`` can read it: on the CPU (read
    on the host) or on ``device`` itself (read by the kernel)."""
    if isinstance(seed, Tensor) and seed.device.type != "cpu" and seed.device != device:
        return seed.to(device)
    return seed


def _init_op(tensors: list[Tensor], kinds: list[int], params: list[float], seed: Seed, keys: list[int],
             global_shapes: list[int], global_offsets: list[int]) -> None:
    """The init_tensors_ op, with an int or a tensor seed."""
    if isinstance(seed, Tensor):
        torch.ops.trainops.init_tensors_.seeded(tensors, kinds, params, seed, keys, global_shapes, global_offsets)
    else:
        torch.ops.trainops.init_tensors_(tensors, kinds, params, seed, keys, global_shapes, global_offsets)


# ---------------------------------------------------------------------------
# The list entry point
# ---------------------------------------------------------------------------


def _check_tensor(t: Tensor, i: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"tensor {i} is a {type(t).__name__}, not a torch.Tensor")
    if t.layout != torch.strided:
        raise TypeError(f"tensor {i} has layout {t.layout}; only dense (strided) tensors can be initialised")
    if t.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"tensor {i} has dtype {t.dtype}; only float16, bfloat16, float32 and float64 are supported")


def _check_spec(spec: InitSpec, i: int) -> None:
    vals = (spec.a, spec.b, spec.c, spec.d)
    if spec.kind == "uniform" and not (math.isfinite(spec.a) and math.isfinite(spec.b) and spec.a <= spec.b):
        raise ValueError(f"tensor {i}: uniform needs finite low <= high, got {spec}")
    if spec.kind in ("normal", "trunc_normal") and not (math.isfinite(spec.a) and math.isfinite(spec.b)):
        raise ValueError(f"tensor {i}: {spec.kind} needs a finite mean and std, got {vals[:2]}")
    if spec.kind in ("normal", "trunc_normal") and spec.b < 0:
        raise ValueError(f"tensor {i}: {spec.kind} needs std >= 0, got std={spec.b}")
    if spec.kind == "trunc_normal" and not spec.c <= spec.d:
        raise ValueError(f"tensor {i}: trunc_normal needs a <= b, got a={spec.c}, b={spec.d}")


def _check_uniform_fits(spec: InitSpec, dtype: torch.dtype, i: int) -> None:
    """As torch's uniform_: bounds inside the output dtype's range, and a width
    (high - low) inside the compute type's (fp32, or fp64 for fp64), which
    would otherwise turn every value into inf or high."""
    if spec.kind != "uniform":
        return
    top = torch.finfo(dtype).max
    width_top = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).max
    if max(abs(spec.a), abs(spec.b)) > top or spec.b - spec.a > width_top:
        raise ValueError(
            f"tensor {i}: uniform bounds [{spec.a}, {spec.b}) do not fit {dtype} (largest value {top:g}, "
            f"largest width {width_top:g})"
        )


def _fallback(tensors: list[Tensor], specs: list[InitSpec], seed: Seed, keys: list[int]) -> None:
    """Devices without a trainops kernel: torch's RNG, seeded from (seed, key)."""
    seed = _seed_int(seed)
    for t, s, k in zip(tensors, specs, keys):
        gen = torch.Generator(device=t.device)
        gen.manual_seed((seed * 0x9E3779B97F4A7C15 + k) & ((1 << 63) - 1))
        if s.kind == "uniform":
            t.uniform_(s.a, s.b, generator=gen)
        elif s.kind == "normal":
            t.normal_(s.a, s.b, generator=gen)
        elif s.kind == "trunc_normal":
            torch.nn.init.trunc_normal_(t, s.a, s.b, s.c, s.d, generator=gen)
        else:
            t.fill_(s.a)


# trunc_normal's kernel samples by the inverse CDF in erf space, z uniform on
# [erf(alpha / sqrt2), erf(beta / sqrt2)], in fp32 (fp64 for fp64 outputs). Near
# z = +-1 the spacing of representable z is 2^-24 (2^-53), so an interval far in
# a tail (or a mean far outside [a, b]) leaves only a few distinct z: the values
# collapse onto a bound. Such intervals go to _trunc_normal_tail_ instead.
_TRUNC_MIN_DISTINCT = 1 << 16


def _trunc_needs_tail(spec: InitSpec, dtype: torch.dtype) -> bool:
    """Fewer than _TRUNC_MIN_DISTINCT representable erf-space values in [a, b]."""
    if spec.kind != "trunc_normal" or not spec.b > 0:
        return False
    mean, std, a, b = spec.a, spec.b, spec.c, spec.d
    za = math.erf(max(min((a - mean) / std, 40.0), -40.0) / math.sqrt(2.0))
    zb = math.erf(max(min((b - mean) / std, 40.0), -40.0) / math.sqrt(2.0))
    edge = max(abs(za), abs(zb))
    if edge == 0.0:
        return False
    bits = 52 if dtype == torch.float64 else 23
    spacing = 2.0 ** (math.floor(math.log2(edge)) - bits)
    return (zb - za) < _TRUNC_MIN_DISTINCT * spacing


# Below this many std (Phi = 4.9e-198), _trunc_normal_tail_ works with log-probabilities.
_LOG_SPACE_BELOW = -30.0


def _ndtri_of_log(log_p: Tensor) -> Tensor:
    """x with log Phi(x) = log_p, for log_p < log Phi(-30) (in place, fp64).

    Newton on the concave log Phi from the asymptotic start x^2 ~ -2 log p -
    log(-2 log p) - log(2 pi): after the first step the iterates rise
    monotonically to the root, each step gaining digits quadratically."""
    s0 = log_p.mul(-2.0)
    x = s0.sub(s0.log()).sub_(math.log(2.0 * math.pi)).sqrt_().neg_()
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    for _ in range(8):
        log_cdf = torch.special.log_ndtr(x)
        # (log Phi(x) - log p) / (phi(x) / Phi(x))
        step = (log_cdf - log_p).mul_(torch.exp(log_cdf + 0.5 * x * x + half_log_2pi))
        x.sub_(step)
    return x


def _trunc_normal_tail_(
    t: Tensor, spec: InitSpec, seed: Seed, key: int, global_shape: list[int] | None, global_offset: list[int] | None
) -> None:
    """trunc_normal for an interval far in a tail: counter-based fp64 uniforms
    (the kernel's own uniform stream of (seed, key), so shards still equal
    slices), then the normal inverse CDF in fp64 (torch.special.ndtri) on the
    lower-tail side, where small probabilities keep their relative precision:
    an interval above the mean is sampled mirrored. An interval beyond 30 std
    (where Phi underflows fp64 from ~38.5 std on) is sampled from
    log-probabilities instead: log Phi(x) = log p solved by Newton
    (_ndtri_of_log). One rounding to t's dtype.
    The values are those of a correct truncated normal, but not bitwise the
    same on CPU and CUDA (ndtri is torch's, per device)."""
    if t.numel() == 0:
        return
    mean, std, a, b = spec.a, spec.b, spec.c, spec.d
    alpha, beta, sign = (a - mean) / std, (b - mean) / std, 1.0
    if alpha + beta > 0:  # mirror onto the lower tail
        alpha, beta, sign = -beta, -alpha, -1.0
    u = torch.empty(t.shape, dtype=torch.float64, device=t.device)
    _init_op([u], [_KINDS["uniform"]], [0.0, 1.0, 0.0, 0.0], seed, [key], global_shape or [], global_offset or [])
    if beta > _LOG_SPACE_BELOW:
        lo = 0.5 * math.erfc(-alpha / math.sqrt(2.0))
        hi = 0.5 * math.erfc(-beta / math.sqrt(2.0))
        z = torch.special.ndtri(u.mul_(hi - lo).add_(lo))
    else:  # Phi(beta) < 1e-197: probabilities would underflow (below ~1e-308 they are 0), so logs
        log_lo, log_hi = (float(torch.special.log_ndtr(torch.tensor(v, dtype=torch.float64))) for v in (alpha, beta))
        r = math.exp(log_lo - log_hi)  # Phi(alpha) / Phi(beta), in [0, 1)
        tiny = torch.finfo(torch.float64).tiny
        z = _ndtri_of_log(u.mul_(1.0 - r).add_(r).clamp_(min=tiny).log_().add_(log_hi))
    x = z.mul_(sign * std).add_(mean).clamp_(a, b)
    # Through fp32 for fp32 and narrower outputs: fp16 / bf16 values stay the
    # fp32 values rounded once, as everywhere else.
    t.copy_(x if t.dtype == torch.float64 else x.float())


def _has_kernel(device: torch.device) -> bool:
    if device.type in _INIT_DEVICES:
        return True
    _extension.warn_fallback(
        "trainops.init", device.type, "falling back to torch's generator for them (same distributions, other values, "
        "not counter-based)"
    )
    return False


@torch.no_grad()
def init_tensors_(
    tensors: Sequence[Tensor],
    specs: InitSpec | tuple | Sequence[InitSpec | tuple],
    seed: int | Tensor | None = None,
    keys: Sequence[int] | None = None,
    *,
    global_shapes: Sequence[ShapeLike | None] | None = None,
    global_offsets: Sequence[Sequence[int] | None] | None = None,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Initialise many tensors in one fused call per device.

    Args:
        tensors: fp16/bf16/fp32/fp64 tensors, on any devices; each is written in place.
        specs: one :class:`InitSpec` (or tuple such as ``("normal", 0.0, 0.02)``)
            for all tensors, or one per tensor.
        seed: 64-bit seed, an int or a one-element integer tensor (on the
            CPU or the tensors' device); drawn from ``generator`` (or torch's
            default generator) when None.
        keys: one 64-bit stream key per tensor; default ``0, 1, 2, ...`` (the
            position in the list). Pass :func:`key_of` of parameter names to
            make the values independent of list order.
        global_shapes: per tensor, the shape of the whole tensor it is a shard
            of (None: the tensor is whole).
        global_offsets: per tensor, the shard's offset in that global tensor
            (default all zeros).
        generator: where the seed is drawn from when ``seed`` is None.

    Returns:
        The list of tensors.

    A constant 0 for a tensor of 2 or more dims warns, as ``zeros_`` does
    (symmetry is never broken). Meta tensors are skipped (they hold no data). A DTensor (FSDP2, tensor
    parallel) is drawn on its local shard at the shard's place in the global
    tensor, so every rank writes the values the unsharded tensor gets (pass no
    global shape for it: its placements give one). No host sync on CUDA: a
    seed drawn from a CUDA ``generator`` stays on the device and the kernel
    reads it. Under CUDA graph capture, such a seed is redrawn by every replay
    (the generator's graph-safe offset advances); an int seed, or one drawn
    from a CPU generator at capture, is replayed as it was.
    """
    tensors = list(tensors)
    specs = _spec_list(specs, len(tensors))
    _init_tensors(tensors, specs, seed, keys, global_shapes, global_offsets, generator)
    # After the call, so that a refused one does not warn too.
    for i, (t, spec) in enumerate(zip(tensors, specs)):
        if spec.kind == "constant" and spec.a == 0.0 and t.numel() > 0 and not _on_meta(t):
            _warn_zero(t, "init_tensors_", f"tensor {i}, ", stacklevel=4)  # _warn_zero, init_tensors_, no_grad, the caller
    return tensors


def _spec_list(specs: InitSpec | tuple | Sequence[InitSpec | tuple], n: int) -> list[InitSpec]:
    """One spec for every tensor (a single spec, or a tuple such as ``("normal", 0.0, 0.02)``, is shared)."""
    if isinstance(specs, (InitSpec, tuple)) and not (
        isinstance(specs, tuple) and specs and not isinstance(specs[0], str)
    ):
        specs = [_as_spec(specs)] * n
    else:
        specs = [_as_spec(s) for s in specs]
    if len(specs) != n:
        raise ValueError(f"got {n} tensors but {len(specs)} specs")
    return specs


def _init_tensors(
    tensors: list[Tensor],
    specs: list[InitSpec],
    seed: int | Tensor | None,
    keys: Sequence[int] | None,
    global_shapes: Sequence[ShapeLike | None] | None = None,
    global_offsets: Sequence[Sequence[int] | None] | None = None,
    generator: torch.Generator | None = None,
    dtensors: Sequence[Tensor] = (),
) -> list[Tensor]:
    """init_tensors_ without its zero-init warning (init_module_ warns by parameter name).
    ``dtensors``: the DTensors whose local shards ``tensors`` holds: a seed
    drawn for them is rank 0's (:func:`_agree_seed`)."""
    if any(distributed.is_dtensor(t) for t in tensors):
        return _init_dtensors_(tensors, specs, seed, keys, global_shapes, global_offsets, generator)
    keys = list(range(len(tensors))) if keys is None else [_to_i64(k) for k in keys]
    if len(keys) != len(tensors):
        raise ValueError(f"got {len(tensors)} tensors but {len(keys)} keys")
    shapes = list(global_shapes) if global_shapes is not None else [None] * len(tensors)
    offsets = list(global_offsets) if global_offsets is not None else [None] * len(tensors)
    if len(shapes) != len(tensors) or len(offsets) != len(tensors):
        raise ValueError("global_shapes and global_offsets need one entry per tensor")
    for i, (t, s) in enumerate(zip(tensors, specs)):
        _check_tensor(t, i)
        _check_spec(s, i)
        _check_uniform_fits(s, t.dtype, i)
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        if t.device.type != "meta":
            groups.setdefault(t.device, []).append(i)
    # Every shard's place, checked before a seed is drawn or anything written;
    # a group with a shard describes all its tensors (whole ones at offset 0).
    layouts: dict[int, tuple[list[int], list[int]]] = {}
    for idx in groups.values():
        if any(shapes[i] is not None for i in idx):
            for i in idx:
                t = tensors[i]
                g = list(shapes[i]) if shapes[i] is not None else list(t.shape)
                o = list(offsets[i]) if offsets[i] is not None else [0] * t.dim()
                if len(g) != t.dim() or len(o) != t.dim():
                    raise ValueError(
                        f"tensor {i} has {t.dim()} dims but global_shape {g} / global_offset {o} do not"
                    )
                _check_shard_layout(i, list(t.shape), g, o)
                layouts[i] = (g, o)
    seed = _resolve_seed(seed, generator, tensors, dtensors)

    for device, idx in groups.items():
        ts = [tensors[i] for i in idx]
        if not _has_kernel(device):
            _fallback(ts, [specs[i] for i in idx], seed, [keys[i] for i in idx])
            continue
        sharded = any(i in layouts for i in idx)
        _extension.mark_written(ts)
        # Far-tail truncations take the fp64 inverse CDF; the kernel writes the others.
        tail = {i for i in idx if _trunc_needs_tail(specs[i], tensors[i].dtype)}
        for i in tail:
            _trunc_normal_tail_(tensors[i], specs[i], _seed_on(seed, device), keys[i], *layouts.get(i, (None, None)))
        idx = [i for i in idx if i not in tail]
        if not idx:
            continue
        params = [v for i in idx for v in (specs[i].a, specs[i].b, specs[i].c, specs[i].d)]
        flat_shapes = [v for i in idx for v in layouts[i][0]] if sharded else []
        flat_offsets = [v for i in idx for v in layouts[i][1]] if sharded else []
        _init_op(
            [tensors[i] for i in idx],
            [_KINDS[specs[i].kind] for i in idx],
            params,
            _seed_on(seed, device),
            [keys[i] for i in idx],
            flat_shapes,
            flat_offsets,
        )
    return tensors


def _init_dtensors_(
    tensors: list[Tensor],
    specs: list[InitSpec],
    seed: int | Tensor | None,
    keys: Sequence[int] | None,
    global_shapes: Sequence[ShapeLike | None] | None,
    global_offsets: Sequence[Sequence[int] | None] | None,
    generator: torch.Generator | None,
) -> list[Tensor]:
    """init_tensors_ of a list holding DTensors: their local shards, placed by
    their placements (the way init_module_ draws sharded parameters)."""
    n = len(tensors)
    shapes = list(global_shapes) if global_shapes is not None else [None] * n
    offsets = list(global_offsets) if global_offsets is not None else [None] * n
    if len(shapes) != n or len(offsets) != n:
        raise ValueError("global_shapes and global_offsets need one entry per tensor")
    locals_ = []
    for i, t in enumerate(tensors):
        if distributed.is_dtensor(t):
            if shapes[i] is not None or offsets[i] is not None:
                raise ValueError(
                    f"tensor {i} is a DTensor: its placements give its shard's place, so pass no global_shape / "
                    "global_offset for it"
                )
            local, shapes[i], offsets[i] = _shard_layout(t)
            locals_.append(local)
        else:
            locals_.append(t)
    _init_tensors(locals_, specs, seed, keys, shapes, offsets, generator, dtensors=tensors)
    # The DTensors themselves (init_tensors_ marked the shards), once the call
    # has passed its checks: a refused call bumps nothing.
    _extension.mark_written(tensors)
    return tensors


# Most dimensions of a shard that index runs (csrc/include/trainops/init_plan.h).
_MAX_SPLIT_DIMS = 8


def _check_shard_layout(
    i: int, local: list[int], global_shape: list[int], offset: list[int], op: str = "trainops.init_tensors_"
) -> None:
    """The op's layout checks, made here so that the Python API raises ValueError
    (the stable-ABI op can only raise RuntimeError)."""
    last_partial = -1
    for d, (n, g, o) in enumerate(zip(local, global_shape, offset)):
        if o < 0 or o + n > g:
            raise ValueError(
                f"{op}: tensor {i} of shape {local} does not fit in global_shape at dim {d} "
                f"(global size {g}, offset {o})"
            )
        if n != g:
            last_partial = d
    if math.prod(global_shape) > 1 << 62:  # the op's index arithmetic (init_plan.h: kMaxGlobalElements)
        raise ValueError(f"{op}: tensor {i}: global_shape {global_shape} has more than 2^62 elements")
    if sum(1 for d in range(max(last_partial, 0)) if local[d] != 1) > _MAX_SPLIT_DIMS:
        raise ValueError(
            f"{op}: tensor {i} is a shard with more than {_MAX_SPLIT_DIMS} split dimensions; "
            "flatten it first"
        )


def _draw_(
    tensor: Tensor,
    spec: InitSpec,
    generator: torch.Generator | None,
    seed: int | Tensor | None,
    key: int | None,
    global_shape: ShapeLike | None,
    global_offset: Sequence[int] | None,
) -> Tensor:
    if seed is None and (tensor.numel() if global_shape is None else math.prod(global_shape)) == 0:
        seed = 0  # no element to draw: leave the generator alone, as torch.nn.init does
    if (
        global_shape is None
        and global_offset is None
        and type(tensor) in _PLAIN_TYPES
        and (device := tensor.device).type in _INIT_DEVICES
    ):
        # The common call -- one whole plain tensor on a device with a kernel --
        # without init_tensors_'s list, shard and device handling, which cost
        # as much as the op on a small tensor (model.apply(init_fn) calls this
        # once per parameter). The same checks in the same order as there, all
        # before the seed is drawn, and the same op call.
        key = 0 if key is None else _to_i64(key)
        _check_tensor(tensor, 0)
        _check_spec(spec, 0)
        _check_uniform_fits(spec, tensor.dtype, 0)
        if not _trunc_needs_tail(spec, tensor.dtype):  # (the far tail takes init_tensors_'s exact fp64 path)
            seed = _resolve_seed(seed, generator, (tensor,))
            if isinstance(seed, Tensor):
                seed = _seed_on(seed, device)
            _extension.mark_written([tensor])
            with torch.no_grad():
                _init_op([tensor], [_KINDS[spec.kind]], [spec.a, spec.b, spec.c, spec.d], seed, [key], [], [])
            return tensor
    init_tensors_(  # validates before it draws the seed, so a bad call leaves the generator alone
        [tensor],
        [spec],
        seed=seed,
        keys=[0 if key is None else key],
        global_shapes=[global_shape] if global_shape is not None else None,
        global_offsets=[global_offset] if global_offset is not None else None,
        generator=generator,
    )
    return tensor


# ---------------------------------------------------------------------------
# torch.nn.init's functions
# ---------------------------------------------------------------------------


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    """The recommended gain of a nonlinearity (as torch.nn.init.calculate_gain)."""
    return torch.nn.init.calculate_gain(nonlinearity, param)


# Private in torch, but custom layers' reset_parameters call them through the
# module (``fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)``), so
# swapping the import must keep them.
_calculate_fan_in_and_fan_out = torch.nn.init._calculate_fan_in_and_fan_out
_calculate_correct_fan = torch.nn.init._calculate_correct_fan


def _fans(shape: ShapeLike) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: ShapeLike, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _fans(shape)
    return fan_in if mode == "fan_in" else fan_out


def _shape_for_fans(tensor: Tensor, global_shape: ShapeLike | None) -> tuple[int, ...]:
    return tuple(global_shape) if global_shape is not None else tuple(tensor.shape)


def _overridable(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Hand a tensor subclass with its own ``__torch_function__`` the call, as
    torch.nn.init does (``func`` is then the public trainops function). Plain
    tensors, parameters and DTensors, whose ``__torch_function__`` is torch's
    disabled one, go straight to ``fn``."""

    @functools.wraps(fn)
    def overridable(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if torch.overrides.has_torch_function_unary(tensor):
            return torch.overrides.handle_torch_function(overridable, (tensor,), tensor, *args, **kwargs)
        return fn(tensor, *args, **kwargs)

    return overridable


@_overridable
def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """Fill ``tensor`` with values from U(a, b) (as torch.nn.init.uniform_)."""
    return _draw_(tensor, InitSpec.uniform(a, b), generator, seed, key, global_shape, global_offset)


@_overridable
def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """Fill ``tensor`` with values from N(mean, std^2) (as torch.nn.init.normal_)."""
    return _draw_(tensor, InitSpec.normal(mean, std), generator, seed, key, global_shape, global_offset)


@_overridable
def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """N(mean, std^2) truncated to [a, b] (absolute bounds, as torch), in one pass."""
    return _draw_(tensor, InitSpec.trunc_normal(mean, std, a, b), generator, seed, key, global_shape, global_offset)


def _warn_zero(tensor: Tensor, what: str, which: str = "", stacklevel: int = 5) -> None:
    """Zero-filling a weight of 2 or more dims never breaks symmetry: say so.
    ``which`` names the tensor in a list ("tensor 1, "). Default stacklevel:
    _warn_zero, zeros_/constant_, no_grad, _overridable, the caller."""
    if tensor.dim() >= 2:
        warnings.warn(
            f"trainops.init.{what}: zero-initialising {which}a {tensor.dim()}-D weight of shape "
            f"{tuple(tensor.shape)}: every unit gets the same gradient, so symmetry is never broken",
            UserWarning,
            stacklevel=stacklevel,
        )


@_overridable
@torch.no_grad()
def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill ``tensor`` with ``val`` (warns when zero-filling a >= 2-D weight).

    A DTensor with a sum ``Partial`` placement is refused unless ``val`` is 0
    (its value is the ranks' sum, so torch's fill gives world-size times
    ``val``); ``avg``, ``max`` and ``min`` ones are filled."""
    if float(val) == 0.0:
        _warn_zero(tensor, "constant_")
    else:
        _refuse_partial(tensor)
    return tensor.fill_(val)


@_overridable
@torch.no_grad()
def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with ones (a sum ``Partial`` DTensor is refused, as in ``constant_``)."""
    _refuse_partial(tensor)
    return tensor.fill_(1.0)


@_overridable
@torch.no_grad()
def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with zeros (warns for a >= 2-D weight: symmetry is never broken)."""
    _warn_zero(tensor, "zeros_")
    return tensor.zero_()


@torch.no_grad()
def eye_(
    tensor: Tensor, *, global_shape: ShapeLike | None = None, global_offset: Sequence[int] | None = None
) -> Tensor:
    """Identity matrix in a 2-D tensor (as torch.nn.init.eye_; draws nothing).

    A shard (``global_shape`` / ``global_offset``, or a DTensor's placements)
    gets its slice of the global identity: the ones where the global row and
    column indices agree. (torch's ``eye_`` raises on a sharded DTensor.)
    """
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    local, _, offset = _drop_in_layout(tensor, global_shape, global_offset, "trainops.init.eye_")
    row0, col0 = offset or (0, 0)
    local.zero_()
    # local[i, j] is global (row0 + i, col0 + j): ones where j = i + row0 - col0.
    local.diagonal(row0 - col0).fill_(1)
    _mark_dtensor_written(tensor)
    return tensor


@torch.no_grad()
def dirac_(
    tensor: Tensor,
    groups: int = 1,
    *,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """Dirac delta in a 3/4/5-D tensor (as torch.nn.init.dirac_; draws nothing).

    Output channel ``g * out_per_group + d`` of each group ``g`` passes input
    channel ``d`` through at the kernel's centre, for ``d`` below
    ``min(out_per_group, in_channels)``. A shard (``global_shape`` /
    ``global_offset``, or a DTensor's placements) gets the ones that fall in
    its block, at global indices. (torch's ``dirac_`` writes a sharded
    DTensor's ones at local indices, so the whole is wrong.)
    """
    dims = tensor.ndimension()
    if dims not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    local, gshape, offset = _drop_in_layout(tensor, global_shape, global_offset, "trainops.init.dirac_")
    sizes = gshape or tuple(tensor.shape)
    offset = offset or (0,) * dims
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if local.is_meta:
        return tensor
    per_group = sizes[0] // groups
    centre = [n // 2 for n in sizes[2:]]
    # The local index of every one that falls in this block (Python ints: no
    # data-dependent shapes, so fake tensors and torch.compile take it too).
    ones = [
        [i - o for i, o in zip([g * per_group + d, d, *centre], offset)]
        for g in range(groups)
        for d in range(min(per_group, sizes[1]))
    ]
    ones = [idx for idx in ones if all(0 <= i < n for i, n in zip(idx, local.shape))]
    local.zero_()
    if ones:
        index = torch.tensor(ones, dtype=torch.long, device=local.device).t()
        local.index_put_(tuple(index), torch.ones((), dtype=local.dtype, device=local.device))
    _mark_dtensor_written(tensor)
    return tensor


# The std of each scheme, in one place for the API functions and the plans
# (torch.nn.init's formulas; uniform bounds are sqrt(3) std).
def _xavier_std(shape: ShapeLike, gain: float) -> float:
    fan_in, fan_out = _fans(shape)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def _kaiming_std(shape: ShapeLike, a: float | None, mode: str, nonlinearity: str) -> float:
    return calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))


@_overridable
def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """U(-bound, bound), bound = gain sqrt(6 / (fan_in + fan_out)) (fans of the global shape)."""
    bound = math.sqrt(3.0) * _xavier_std(_shape_for_fans(tensor, global_shape), gain)
    return _draw_(tensor, InitSpec.uniform(-bound, bound), generator, seed, key, global_shape, global_offset)


@_overridable
def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out)) (fans of the global shape)."""
    std = _xavier_std(_shape_for_fans(tensor, global_shape), gain)
    return _draw_(tensor, InitSpec.normal(0.0, std), generator, seed, key, global_shape, global_offset)


@_overridable
def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """U(-bound, bound), bound = gain sqrt(3 / fan) (as torch.nn.init.kaiming_uniform_)."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(_shape_for_fans(tensor, global_shape), a, mode, nonlinearity)
    return _draw_(tensor, InitSpec.uniform(-bound, bound), generator, seed, key, global_shape, global_offset)


@_overridable
def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan) (as torch.nn.init.kaiming_normal_)."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return tensor
    std = _kaiming_std(_shape_for_fans(tensor, global_shape), a, mode, nonlinearity)
    return _draw_(tensor, InitSpec.normal(0.0, std), generator, seed, key, global_shape, global_offset)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """LAPACK's QR rounds differently with 1 and with N threads (the blocked
    Householder updates split the work): on the CPU it runs on one thread, so
    an orthogonal init is the same for any thread count, like the rest of
    trainops.init. The QR is a small part of an init; the Gaussian draw keeps
    every thread. torch's thread count is process-wide: another thread's ops
    run on one thread meanwhile (an init is not usually concurrent with
    training)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or torch.compiler.is_compiling():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _orthogonal_gauss(n: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """The buffer for the Gaussians of ``n`` orthogonal matrices of ``shape``
    (rows x the other dims flattened), to be drawn N(0, 1) with one key each."""
    rows = shape[0]
    return torch.empty(
        (n, rows, math.prod(shape) // rows), dtype=torch.float64 if dtype == torch.float64 else torch.float32, device=device
    )


@torch.no_grad()
def _orthogonal_finish(
    tensors: list[Tensor],
    gains: list[float],
    gauss: Tensor,
    shape: tuple[int, ...],
    global_offsets: list[Sequence[int] | None] | None = None,
    sharded: bool = False,
) -> None:
    """QR of drawn Gaussians (one batch) with the sign fix, times the gains, into
    ``tensors`` (a shard's slice of the whole matrix when ``sharded``)."""
    rows, cols = gauss.shape[1:]
    if rows < cols:
        gauss = gauss.transpose(1, 2)
    with _one_cpu_thread(gauss.device):
        q, r = torch.linalg.qr(gauss)
    q = q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)
    if rows < cols:
        q = q.transpose(1, 2)
    for i, t in enumerate(tensors):
        full = (q[i] * gains[i]).reshape(shape)
        if sharded:
            off = (global_offsets or [None] * len(tensors))[i] or [0] * len(shape)
            full = full[tuple(slice(o, o + n) for o, n in zip(off, t.shape))]
        t.copy_(full)


def _mark_dtensor_written(tensor: Tensor) -> None:
    """Bump a DTensor's version counter after a drop-in wrote its local
    shard in place (the shard's own counter is not the DTensor's)."""
    if distributed.is_dtensor(tensor):
        _extension.mark_written([tensor])


def _drop_in_layout(
    tensor: Tensor, global_shape: ShapeLike | None, global_offset: Sequence[int] | None, op: str
) -> tuple[Tensor, tuple[int, ...] | None, tuple[int, ...] | None]:
    """(local tensor, global shape, offset) of a drop-in function's tensor: a
    DTensor's from its placements, else the arguments, checked (callers check
    before drawing a seed). Shape and offset are None for a whole plain tensor."""
    if distributed.is_dtensor(tensor):
        if global_shape is not None or global_offset is not None:
            raise ValueError("a DTensor's placements give its shard's place: pass no global_shape / global_offset")
        return _shard_layout(tensor)
    if global_shape is None and global_offset is None:
        return tensor, None, None
    g = tuple(global_shape) if global_shape is not None else tuple(tensor.shape)
    o = tuple(global_offset) if global_offset is not None else (0,) * tensor.dim()
    if len(g) != tensor.dim() or len(o) != tensor.dim():
        raise ValueError(f"{op}: tensor has {tensor.dim()} dims but global_shape {list(g)} / global_offset {list(o)} do not")
    _check_shard_layout(0, list(tensor.shape), list(g), list(o), op=op)
    return tensor, g, o


@torch.no_grad()
def _orthogonal_batch(
    tensors: list[Tensor],
    gains: list[float],
    seed: Seed,
    keys: list[int],
    global_shape: ShapeLike | None = None,
    global_offsets: list[Sequence[int] | None] | None = None,
) -> None:
    """Orthogonal init of same-shaped tensors: Gaussian from the counter RNG, one batched QR."""
    shape = tuple(global_shape) if global_shape is not None else tuple(tensors[0].shape)
    if len(shape) < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gauss = _orthogonal_gauss(len(tensors), shape, tensors[0].dtype, tensors[0].device)
    init_tensors_(list(gauss.unbind(0)), InitSpec.normal(0.0, 1.0), seed=seed, keys=keys)
    _orthogonal_finish(tensors, gains, gauss, shape, global_offsets, sharded=global_shape is not None)


@_overridable
def orthogonal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """(Semi-)orthogonal matrix times ``gain`` (as torch.nn.init.orthogonal_).

    A Gaussian matrix from the counter RNG, then ``torch.linalg.qr`` with the
    sign fix. A shard (``global_shape``) is the slice of the global matrix, so
    every rank computes the whole matrix (its QR is not shardable).
    """
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"orthogonal_ supports float16, bfloat16, float32 and float64 tensors, got {tensor.dtype}")
    if tensor.numel() == 0:
        return tensor
    tensor_local, global_shape, global_offset = _drop_in_layout(
        tensor, global_shape, global_offset, "trainops.init.orthogonal_"
    )
    _mark_dtensor_written(tensor)
    _orthogonal_batch(
        [tensor_local],
        [gain],
        _resolve_seed(seed, generator, [tensor_local], dtensors=[tensor]),
        [0 if key is None else key],
        global_shape,
        [global_offset],
    )
    return tensor


@_overridable
@torch.no_grad()
def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
    *,
    seed: int | Tensor | None = None,
    key: int | None = None,
    global_shape: ShapeLike | None = None,
    global_offset: Sequence[int] | None = None,
) -> Tensor:
    """2-D tensor: N(0, std^2) with ``ceil(sparsity * rows)`` zeros per column (as torch).

    The zero positions are a per-column random permutation from the same
    counter RNG (stream ``key + 1``), so they are reproducible too. A shard
    (``global_shape`` / ``global_offset``, or a DTensor's placements) is the
    same slice of the whole tensor: ``rows`` is the global row count, and each
    rank ranks its columns' keys over every global row (rows x local columns
    uniforms), so a row shard knows which of its rows are zero.
    """
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    # Checked before the seed is drawn: a refused call leaves the generator alone.
    local, gshape, goffset = _drop_in_layout(tensor, global_shape, global_offset, "trainops.init.sparse_")
    gshape, goffset = gshape or tuple(tensor.shape), goffset or (0, 0)
    key = 0 if key is None else _to_i64(key)
    spec = InitSpec.normal(0.0, std)
    _check_tensor(local, 0)
    _check_spec(spec, 0)
    rows = gshape[0]
    num_zeros = int(math.ceil(sparsity * rows))
    if seed is None and math.prod(gshape) == 0:
        seed = 0  # no element to draw: leave the generator alone, as torch.nn.init does
    seed = _resolve_seed(seed, generator, [local], dtensors=[tensor])
    _mark_dtensor_written(tensor)
    init_tensors_([local], spec, seed=seed, keys=[key], global_shapes=[gshape], global_offsets=[goffset])
    if num_zeros > 0 and local.numel() > 0:
        row0, col0 = goffset
        u = torch.empty((rows, local.shape[1]), dtype=torch.float64, device=local.device)
        init_tensors_(
            [u], InitSpec.uniform(0.0, 1.0), seed=seed, keys=[_to_i64(key + 1)], global_shapes=[gshape],
            global_offsets=[(0, col0)],
        )
        zero_rows = torch.argsort(u, dim=0, stable=True)[:num_zeros]  # global row indices, per local column
        zero = torch.zeros_like(u, dtype=torch.bool).scatter_(0, zero_rows, True)
        local.masked_fill_(zero[row0 : row0 + local.shape[0]], 0.0)
    return tensor


def _deprecated_alias(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """torch.nn.init's old name of ``fn`` (no trailing underscore): warns as
    torch's does, then calls ``fn``, so legacy code keeps working after the
    import is swapped."""
    new_name = fn.__name__
    old_name = new_name[:-1]

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Tensor:
        warnings.warn(
            f"`nn.init.{old_name}` is now deprecated in favor of `nn.init.{new_name}`.", FutureWarning, stacklevel=2
        )
        return fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = f"Deprecated, as in torch.nn.init: use :func:`{new_name}`."
    return alias


uniform = _deprecated_alias(uniform_)
normal = _deprecated_alias(normal_)
constant = _deprecated_alias(constant_)
eye = _deprecated_alias(eye_)
dirac = _deprecated_alias(dirac_)
xavier_uniform = _deprecated_alias(xavier_uniform_)
xavier_normal = _deprecated_alias(xavier_normal_)
kaiming_uniform = _deprecated_alias(kaiming_uniform_)
kaiming_normal = _deprecated_alias(kaiming_normal_)
orthogonal = _deprecated_alias(orthogonal_)
sparse = _deprecated_alias(sparse_)


# ---------------------------------------------------------------------------
# Whole-model plans
# ---------------------------------------------------------------------------

_RELU_FAMILY = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Softplus,
)
_SQUASH = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
# Modules and functions that pass the activation question through (conv ->
# norm -> relu, linear -> dropout -> gelu, conv -> pool/pad/upsample -> relu):
# dropout, normalisation, pooling, padding, resampling and reshaping.
_TRANSPARENT_MODULES = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_TRANSPARENT_FUNCS = {
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm", "local_response_norm",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "pad", "interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle",
    "flatten", "unflatten", "reshape", "view", "contiguous", "permute", "transpose", "squeeze", "unsqueeze",
}
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
_RNNS = (nn.RNN, nn.GRU, nn.LSTM, nn.RNNCellBase)  # RNNCellBase: RNNCell, GRUCell, LSTMCell


@dataclass
class PlanEntry:
    """How one parameter is initialised.

    Attributes:
        name: qualified parameter name.
        shape: its shape.
        scheme: what is applied, e.g. "kaiming_normal_(fan_in, relu)".
        spec: the distribution (None for "orthogonal" / "keep").
        fan: the fan used (None if no fan).
        gain: the gain used (None if none).
        std: standard deviation of the values (None for constants).
        bound: bound of a uniform / truncated distribution (None otherwise).
        reason: why this scheme was picked.
        guessed: True when the activation or the rule had to be guessed.
        key: the stream key (from the name).
        blocks: for orthogonal_, the number of row blocks (an RNN's gates)
            each made orthogonal on its own.
        norm_of: for a weight_norm magnitude ``g``: (name of its direction
            ``v``, dim); ``g`` is set to ``torch.norm_except_dim(v, 2, dim)``
            after ``v`` is drawn, so the layer's weight starts as ``v``.
    """

    name: str
    shape: tuple[int, ...]
    scheme: str
    spec: InitSpec | None
    fan: int | None = None
    gain: float | None = None
    std: float | None = None
    bound: float | None = None
    reason: str = ""
    guessed: bool = False
    key: int = 0
    blocks: int = 1  # orthogonal_: row blocks (RNN gates) made orthogonal one by one
    norm_of: tuple[str, int] | None = None  # weight_norm's g: (v's name, dim)


@dataclass
class InitPlan:
    """The per-parameter plan of :func:`plan`; print it for a table."""

    scheme: str
    entries: list[PlanEntry] = field(default_factory=list)
    traced: bool = False

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> PlanEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def __str__(self) -> str:
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.4g}"

        head = f"trainops.init plan (scheme={self.scheme!r}"
        if self.scheme == "auto":
            head += f", activations from {'the torch.fx graph' if self.traced else 'module order (the model does not trace)'}"
        head += ")"
        rows = [("name", "shape", "scheme", "fan", "gain", "std", "bound", "reason")]
        for e in self.entries:
            rows.append(
                (
                    e.name,
                    "x".join(map(str, e.shape)) or "scalar",
                    e.scheme,
                    "-" if e.fan is None else str(e.fan),
                    f(e.gain),
                    f(e.std),
                    f(e.bound),
                    ("GUESSED: " if e.guessed else "") + e.reason,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(7)]
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r[:7], widths)) + "  " + r[7] for r in rows]
        return "\n".join(lines)

    __repr__ = __str__


class _Act(NamedTuple):
    """The activation after a layer: its gain family (``kind``: relu,
    leaky_relu, tanh, sigmoid or selu), the parameter of the gain (leaky
    slope) and the name to show in the plan (gelu, silu, ...)."""

    kind: str
    param: float | None
    name: str


_RELU_LIKE_FUNCS = {"relu", "relu6", "gelu", "silu", "elu", "celu", "mish", "hardswish", "softplus"}


def _activation_of_module(m: nn.Module) -> _Act | None:
    if isinstance(m, nn.LeakyReLU):
        return _Act("leaky_relu", float(m.negative_slope), "leaky_relu")
    if isinstance(m, nn.PReLU):  # a learned leaky slope, starting at m.init
        return _Act("leaky_relu", float(m.init), "prelu")
    if isinstance(m, nn.SELU):
        return _Act("selu", None, "selu")
    if isinstance(m, _RELU_FAMILY):
        return _Act("relu", None, type(m).__name__.lower())
    for cls, name in _SQUASH.items():
        if isinstance(m, cls):
            return _Act(name, None, name)
    if isinstance(m, nn.Hardtanh):
        return _Act("tanh", None, "hardtanh")
    return None


def _activation_of_function(name: str, args: tuple, kwargs: dict) -> _Act | None:
    """The activation of a call_function / call_method node (F.relu, x.tanh(), ...)."""
    base = name[:-1] if name.endswith("_") else name
    if base == "leaky_relu":
        return _Act("leaky_relu", float(kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)), base)
    if base == "selu":
        return _Act("selu", None, base)
    if base in _RELU_LIKE_FUNCS:
        return _Act("relu", None, base)
    if base in ("tanh", "sigmoid"):
        return _Act(base, None, base)
    if base == "hardtanh":
        return _Act("tanh", None, base)
    return None


def _activation_of_callable(f: Any) -> _Act | None:
    """A layer's ``activation`` attribute (TransformerEncoderLayer): a module or a function."""
    if isinstance(f, nn.Module):
        return _activation_of_module(f)
    name = getattr(f, "__name__", "")
    return _activation_of_function(name, (), {}) if name else None


def _distributed_hooks(m: nn.Module) -> set[int]:
    """Handles of m's forward (pre-)hooks that come from torch.distributed."""

    def origin(h: Any) -> str:
        h = getattr(h, "func", h)  # functools.partial
        return getattr(h, "__module__", None) or ""

    return {
        k
        for hooks in (m._forward_pre_hooks, m._forward_hooks)
        for k, h in hooks.items()
        if origin(h).startswith("torch.distributed")
    }


class _LayerTracer(torch.fx.Tracer):
    """symbolic_trace's tracer, but a torch.nn layer stays a leaf also when a
    wrapper subclassed it (FSDP2's fully_shard turns Linear into FSDPLinear),
    so a sharded model traces to the same graph, and gets the same plan, as
    the unsharded one."""

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        # A container that torch.distributed hooked (FSDP2's all-gather before a
        # fully_shard'ed block's forward, tensor parallel's input
        # redistribution) is traced through its own forward: those hooks act on
        # real tensors, fail on the tracer's proxies, and would cost a sharded
        # model the plan of the unsharded one. They add no layers or
        # activations; a user's own hooks (which may) still run.
        skipped = _distributed_hooks(m)
        if not skipped or self.is_leaf_module(m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        saved = m._forward_pre_hooks, m._forward_hooks
        m._forward_pre_hooks = OrderedDict((k, h) for k, h in saved[0].items() if k not in skipped)
        m._forward_hooks = OrderedDict((k, h) for k, h in saved[1].items() if k not in skipped)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            m._forward_pre_hooks, m._forward_hooks = saved

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if super().is_leaf_module(m, module_qualified_name):
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return any(
            cls is not nn.Module and cls.__module__.startswith("torch.nn.modules") for cls in type(m).__mro__[1:]
        )


def _fx_activations(model: nn.Module) -> dict[str, _Act | None] | None:
    """Activation that follows each Linear/Conv module called in a torch.fx
    trace (None if the model does not trace). Layers inside a torch.nn leaf
    (TransformerEncoderLayer, MultiheadAttention) are not in the graph."""
    try:
        graph = _LayerTracer().trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: fall back to module order
        return None
    modules = dict(model.named_modules())
    out: dict[str, _Act | None] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), (nn.Linear,) + _CONV):
            continue
        act = None
        cur = node
        for _ in range(8):
            users = list(cur.users)
            if len(users) != 1:
                break
            nxt = users[0]
            if nxt.op == "call_module":
                m = modules.get(nxt.target)
                act = _activation_of_module(m) if m is not None else None
                if act is not None or not isinstance(m, _TRANSPARENT_MODULES):
                    break
            elif nxt.op in ("call_function", "call_method"):
                name = nxt.target if isinstance(nxt.target, str) else getattr(nxt.target, "__name__", "")
                act = _activation_of_function(name, nxt.args, nxt.kwargs)
                if act is not None or name not in _TRANSPARENT_FUNCS:
                    break
            else:
                break
            cur = nxt
        out[node.target] = act
    return out


def _order_activations(model: nn.Module) -> dict[str, _Act | None]:
    """Activation following each Linear/Conv in module registration order (a
    guess); a Transformer layer's feed-forward Linear gets the layer's own
    ``activation`` (a function there, not a module)."""
    named = list(model.named_modules())
    out: dict[str, _Act | None] = {}
    for i, (name, m) in enumerate(named):
        if isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            # Its activation (module or function) sits between linear1 and
            # linear2, whatever order the submodules were registered in.
            prefix = f"{name}." if name else ""
            out[prefix + "linear1"] = _activation_of_callable(m.activation)
            out[prefix + "linear2"] = None
        if not isinstance(m, (nn.Linear,) + _CONV) or name in out:
            continue
        act = None
        for _, nxt in named[i + 1 :]:
            a = _activation_of_module(nxt)
            if a is not None:
                act = a
                break
            if isinstance(nxt, (nn.Linear, nn.Embedding) + _CONV + _RNNS):
                break
        out[name] = act
    return out


@dataclass
class _Context:
    """What the rules know of the whole model."""

    acts: dict[str, _Act | None]
    guessed_acts: set[str]  # layers whose activation came from module order
    traced: bool
    n_layers: int | None
    n_layers_from: str  # where n_layers came from (gpt2)
    modules: dict[str, nn.Module]
    in_transformer: set[str]  # modules inside an nn.Transformer (its own init)
    first_names: dict[int, str]  # id(module) -> its first name, the key of acts / modules

    def name_of(self, m: nn.Module, mname: str) -> str:
        """The name the tables above know ``m`` by (a module registered twice
        is planned under its canonical name but traced under its first)."""
        return self.first_names.get(id(m), mname)

    def parent(self, mname: str) -> nn.Module | None:
        return self.modules.get(mname.rsplit(".", 1)[0] if "." in mname else "") if mname else None


def _entry(name: str, p: Tensor, scheme: str, spec: InitSpec | None, reason: str, **kw: Any) -> PlanEntry:
    std = kw.pop("std", None)
    bound = kw.pop("bound", None)
    if spec is not None and std is None:
        if spec.kind == "normal":
            std = spec.b
        elif spec.kind == "uniform":
            bound = spec.b
            std = (spec.b - spec.a) / math.sqrt(12.0)
        elif spec.kind == "constant":
            std = None
    return PlanEntry(name, tuple(p.shape), scheme, spec, std=std, bound=bound, reason=reason, key=key_of(name), **kw)


def _kaiming_entry(name: str, p: Tensor, mode: str, nl: str, slope: float | None, reason: str, guessed: bool) -> PlanEntry:
    gain = calculate_gain(nl, slope)
    fan = _fan(p.shape, mode)
    std = _kaiming_std(p.shape, slope, mode, nl)
    return _entry(name, p, f"kaiming_normal_({mode}, {nl})", InitSpec.normal(0.0, std), reason, fan=fan, gain=gain, guessed=guessed)


def _xavier_entry(name: str, p: Tensor, gain: float, reason: str, guessed: bool = False) -> PlanEntry:
    fan_in, fan_out = _fans(p.shape)
    bound = math.sqrt(3.0) * _xavier_std(p.shape, gain)
    return _entry(
        name, p, f"xavier_uniform_(gain={gain:.4g})", InitSpec.uniform(-bound, bound), reason, fan=fan_in + fan_out, gain=gain, guessed=guessed
    )


def _xavier_normal_entry(name: str, p: Tensor, reason: str) -> PlanEntry:
    fan_in, fan_out = _fans(p.shape)
    return _entry(name, p, "xavier_normal_", InitSpec.normal(0.0, _xavier_std(p.shape, 1.0)), reason, fan=fan_in + fan_out, gain=1.0)


def _uniform_entry(name: str, p: Tensor, bound: float, scheme: str, reason: str, fan: int | None = None) -> PlanEntry:
    return _entry(name, p, scheme, InitSpec.uniform(-bound, bound), reason, fan=fan)


def _zeros_entry(name: str, p: Tensor, reason: str) -> PlanEntry:
    return _entry(name, p, "zeros_", InitSpec.constant(0.0), reason)


def _ones_entry(name: str, p: Tensor, reason: str) -> PlanEntry:
    return _entry(name, p, "ones_", InitSpec.constant(1.0), reason)


def _prelu_entry(name: str, m: nn.PReLU, p: Tensor) -> PlanEntry:
    # Its slope, as PReLU.reset_parameters sets it (ones would make it the identity).
    return _entry(name, p, f"constant_({m.init:g})", InitSpec.constant(float(m.init)), "PReLU slope (its init value)")


def _mha_entry(full: str, pname: str, p: Tensor) -> PlanEntry:
    """A MultiheadAttention parameter, as its _reset_parameters draws it (the
    practice too): xavier_uniform_ projections, zero biases, xavier_normal_
    bias_k / bias_v."""
    if pname in ("bias_k", "bias_v"):
        return _xavier_normal_entry(full, p, "MultiheadAttention bias_k / bias_v (as its _reset_parameters)")
    if _is_bias(pname):
        return _zeros_entry(full, p, "MultiheadAttention bias (as its _reset_parameters)")
    return _xavier_entry(full, p, 1.0, "MultiheadAttention projection (as its _reset_parameters)")


def _is_bias(pname: str) -> bool:
    # "bias", "in_proj_bias", RNN "bias_ih_l0" ...
    return pname.endswith("bias") or pname.startswith("bias")


def _layer_rule(scheme: str, mname: str, m: nn.Module, pname: str, p: Tensor, ctx: _Context) -> PlanEntry:
    full = f"{mname}.{pname}" if mname else pname
    mname = ctx.name_of(m, mname)  # for the lookups: activations, parents
    is_bias = _is_bias(pname)
    if isinstance(m, nn.PReLU):
        return _prelu_entry(full, m, p)
    if scheme == "torch":
        return _torch_rule(full, mname, m, pname, p, ctx)
    if scheme == "gpt2":
        return _gpt2_rule(full, m, pname, p, ctx)

    if isinstance(m, _NORMS):
        return _zeros_entry(full, p, f"{type(m).__name__} bias") if is_bias else _ones_entry(full, p, f"{type(m).__name__} scale")
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        pad = "" if m.padding_idx is None else f"; padding row {m.padding_idx} zeroed"
        if pad and pname != "weight":  # weight_v of the hook-style weight_norm: the row is not zeroed
            pad = f"; padding row {m.padding_idx} not zeroed ({pname})"
        return _entry(full, p, "normal_(0, 0.01)", InitSpec.normal(0.0, 0.01), type(m).__name__ + pad)
    if isinstance(m, _RNNS):
        kind = type(m).__name__
        if is_bias:
            return _zeros_entry(full, p, f"{kind} bias")
        if pname.startswith("weight_hh"):
            # One orthogonal matrix per gate block, so each gate's recurrent map
            # preserves norms (a whole-stack QR leaves each block far from it).
            gates = p.shape[0] // m.hidden_size if m.hidden_size else 1
            h = p.shape[0] // max(gates, 1)
            return _entry(
                full, p, "orthogonal_" if gates == 1 else f"orthogonal_ per gate ({gates} x {h}x{p.shape[1]})", None,
                f"{kind} recurrent weight", gain=1.0, std=1.0 / math.sqrt(max(h, p.shape[1])), blocks=max(gates, 1),
            )
        if pname.startswith("weight_hr"):
            return _xavier_entry(full, p, 1.0, f"{kind} projection weight (proj_size)")
        return _xavier_entry(full, p, 1.0, f"{kind} input weight")
    if isinstance(m, nn.MultiheadAttention):
        return _mha_entry(full, pname, p)
    if isinstance(m, (nn.Linear,) + _CONV):
        layer = "Conv" if isinstance(m, _CONV) else "Linear"
        if is_bias:
            return _zeros_entry(full, p, f"{layer} bias")
        if scheme == "kaiming":
            return _kaiming_entry(full, p, "fan_in", "relu", None, "scheme 'kaiming'", False)
        if scheme == "xavier":
            return _xavier_entry(full, p, 1.0, "scheme 'xavier'")
        act = ctx.acts.get(mname)
        guessed = not ctx.traced or mname in ctx.guessed_acts
        src = "module order" if guessed else "torch.fx graph"
        if act is None:
            return _xavier_entry(full, p, 1.0, f"{layer} with no activation after it ({src})", guessed)
        if act.kind == "selu":  # self-normalising: LeCun normal, std 1/sqrt(fan_in) (torch's advice)
            return _kaiming_entry(full, p, "fan_in", "linear", None, f"{layer} followed by selu: LeCun normal ({src})", guessed)
        if act.kind in ("relu", "leaky_relu"):
            mode = "fan_out" if layer == "Conv" else "fan_in"
            return _kaiming_entry(full, p, mode, act.kind, act.param, f"{layer} followed by {act.name} ({src})", guessed)
        return _xavier_entry(full, p, calculate_gain(act.kind), f"{layer} followed by {act.name} ({src})", guessed)
    # Anything else: a parameter of an unknown module.
    if p.dim() >= 2:
        return _xavier_entry(full, p, 1.0, f"parameter of {type(m).__name__} (unknown module)", guessed=True)
    if is_bias:
        return _zeros_entry(full, p, f"bias of {type(m).__name__} (unknown module)")
    e = _ones_entry(full, p, f"1-D parameter of {type(m).__name__} (unknown module), taken as a scale")
    e.guessed = True
    return e


def _weight_shape(m: nn.Module) -> torch.Size:
    """The shape of a layer's weight, without computing a parametrized one:
    that runs its parametrizations (spectral_norm's power iteration, in
    training mode, updates u and v; under FSDP2 it fails)."""
    if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
        plist = m.parametrizations.weight
        for name in ("original", "original1"):  # (original1: weight_norm's direction v, the weight's shape)
            if hasattr(plist, name):
                return getattr(plist, name).shape
    return m.weight.shape


def _torch_rule(full: str, mname: str, m: nn.Module, pname: str, p: Tensor, ctx: _Context) -> PlanEntry:
    """What each module's reset_parameters() draws, from the counter RNG."""
    is_bias = _is_bias(pname)
    if mname in ctx.in_transformer and p.dim() > 1:
        return _xavier_entry(full, p, 1.0, "nn.Transformer._reset_parameters (every matrix)")
    parent = ctx.parent(mname)
    if isinstance(parent, nn.MultiheadAttention) and mname.endswith("out_proj") and is_bias:
        return _zeros_entry(full, p, "MultiheadAttention._reset_parameters (out_proj.bias)")
    if isinstance(m, (nn.Linear,) + _CONV):
        shape = _weight_shape(m)
        fan_in, _ = _fans(shape)
        if is_bias:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            return _uniform_entry(full, p, bound, "uniform_(+-1/sqrt(fan_in))", "reset_parameters bias", fan=fan_in)
        gain = calculate_gain("leaky_relu", math.sqrt(5))
        bound = math.sqrt(3.0) * _kaiming_std(shape, math.sqrt(5), "fan_in", "leaky_relu")
        return _entry(
            full, p, "kaiming_uniform_(a=sqrt(5))", InitSpec.uniform(-bound, bound), "reset_parameters weight", fan=fan_in, gain=gain
        )
    if isinstance(m, nn.Bilinear):
        in1 = _weight_shape(m)[1]
        return _uniform_entry(full, p, 1.0 / math.sqrt(in1), "uniform_(+-1/sqrt(in1_features))", "Bilinear.reset_parameters", fan=in1)
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        return _entry(full, p, "normal_(0, 1)", InitSpec.normal(0.0, 1.0), f"{type(m).__name__}.reset_parameters")
    if isinstance(m, _NORMS):
        return _zeros_entry(full, p, "reset_parameters") if is_bias else _ones_entry(full, p, "reset_parameters")
    if isinstance(m, _RNNS):
        bound = 1.0 / math.sqrt(m.hidden_size)
        return _uniform_entry(full, p, bound, "uniform_(+-1/sqrt(hidden))", "RNN reset_parameters")
    if isinstance(m, nn.MultiheadAttention):
        return _mha_entry(full, pname, p)
    if p.dim() >= 2:
        return _xavier_entry(full, p, 1.0, f"parameter of {type(m).__name__} (unknown module)", guessed=True)
    e = (_zeros_entry if is_bias else _ones_entry)(full, p, f"parameter of {type(m).__name__} (unknown module)")
    e.guessed = True
    return e


# Output projections of attention and MLP blocks by their usual names (GPT-2,
# torch.nn.Transformer*Layer, LLaMA, T5, OPT/ViT, Megatron).
_RESIDUAL_PROJ = re.compile(
    r"(^|\.)(c_proj|out_proj|o_proj|proj|down_proj|dense_4h_to_h|linear2|fc2|w2|wo)\.weight$"
)


def _gpt2_rule(full: str, m: nn.Module, pname: str, p: Tensor, ctx: _Context) -> PlanEntry:
    """GPT-2: normal(0, 0.02), residual projections 0.02/sqrt(2 n_layers), zero biases, unit norms."""
    if _is_bias(pname):
        return _zeros_entry(full, p, "bias")
    if isinstance(m, _NORMS):
        return _ones_entry(full, p, f"{type(m).__name__} scale")
    if p.dim() < 2:
        e = _ones_entry(full, p, "1-D parameter, taken as a scale")
        e.guessed = True
        return e
    # A residual projection by its name, in a Linear-like layer (a Conv "proj"
    # is a patch embedding, not a residual branch).
    if _RESIDUAL_PROJ.search(full) and not isinstance(m, _CONV):
        if ctx.n_layers:
            std = 0.02 / math.sqrt(2 * ctx.n_layers)
            e = _entry(
                full, p, "normal_(0, 0.02/sqrt(2 n_layers))", InitSpec.normal(0.0, std),
                f"residual projection, {ctx.n_layers} layers ({ctx.n_layers_from})",
            )
            e.guessed = ctx.n_layers_from.startswith("guessed")
            return e
        e = _entry(full, p, "normal_(0, 0.02)", InitSpec.normal(0.0, 0.02), "residual projection, not scaled: no layer count found (pass n_layers=)")
        e.guessed = True
        return e
    return _entry(full, p, "normal_(0, 0.02)", InitSpec.normal(0.0, 0.02), "GPT-2 weight")


def _count_layers(model: nn.Module) -> tuple[int | None, str]:
    """(n_layers, where it came from) for "gpt2": the model's config, else the
    container (ModuleList / Sequential) with the most children that hold a
    residual projection -- the transformer blocks -- which is a guess."""
    cfg = getattr(model, "config", None)
    for attr in ("n_layer", "num_hidden_layers", "n_layers"):
        v = getattr(cfg, attr, None) if cfg is not None else None
        if isinstance(v, int):
            return v, f"config.{attr}"
    best, where = 0, ""
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        blocks = sum(
            1 for child in m.children() if any(_RESIDUAL_PROJ.search(pn) for pn, _ in child.named_parameters())
        )
        if blocks > best:
            best, where = blocks, name or "the model"
    if best:
        return best, f"guessed: the {best} blocks of {where!r}"
    return None, ""


def _skip_fn(skip: Iterable[str] | Callable[[str, Tensor], bool] | None, module: nn.Module | None = None) -> Callable[[str, Tensor], bool]:
    """The skip predicate; names that match no parameter or module prefix of
    ``module`` raise (a typo would silently initialise what was meant to be kept)."""
    if skip is None:
        return lambda name, p: False
    if callable(skip):
        base = lambda name, p: bool(skip(name, p))  # noqa: E731
    else:
        names = {skip} if isinstance(skip, str) else set(skip)
        if module is not None:
            known = {n for n, _ in module.named_parameters(remove_duplicate=False)}
            known |= {n for n, _ in module.named_modules() if n}
            known |= {a for a in map(_layer_alias, list(known)) if a}  # e.g. "0.weight" of a parametrized one
            unknown = sorted(names - known)
            if unknown:
                raise ValueError(f"skip names {unknown} match no parameter or module of the model")
        base = lambda name, p: name in names or any(name.startswith(n + ".") for n in names)  # noqa: E731
    if module is None:
        return base
    # A tied parameter is planned under one of its names: skipping any of them
    # (e.g. lm_head.weight tied to the embedding) keeps the shared tensor.
    aliases: dict[int, list[str]] = {}
    for n, q in module.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(q), []).extend(a for a in (n, _layer_alias(n)) if a)
    return lambda name, p: base(name, p) or any(base(n, p) for n in aliases.get(id(p), ()) if n != name)


def _layer_alias(name: str) -> str | None:
    """'0.weight' for '0.parametrizations.weight.original' (the name the layer
    gives a parametrized tensor); None for a name outside a parametrization."""
    layer, sep, rest = f".{name}".rpartition(".parametrizations.")
    return f"{layer}.{rest.split('.')[0]}".lstrip(".") if sep and rest else None


def _canonical_names(module: nn.Module) -> dict[int, tuple[str, nn.Module, str]]:
    """Per parameter (by id): the (qualified name, module, local name) it is
    planned under. A tied parameter has several names; it is planned once,
    under its Embedding's name if one of them is an Embedding's weight, else
    under the smallest name, so the plan and the values do not depend on the
    order the modules were registered in."""
    aliases: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for mname, m in module.named_modules(remove_duplicate=False):
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            aliases.setdefault(id(p), []).append((full, m, pname))
    return {
        pid: min(names, key=lambda a: (not isinstance(a[1], (nn.Embedding, nn.EmbeddingBag)), a[0]))
        for pid, names in aliases.items()
    }


def plan(
    module: nn.Module,
    scheme: str = "auto",
    *,
    skip: Iterable[str] | Callable[[str, Tensor], bool] | None = None,
    n_layers: int | None = None,
) -> InitPlan:
    """The initialisation plan of a model, per parameter, with reasons.

    Args:
        module: the model (may live on the meta device).
        scheme: "auto" (Linear + ReLU family -> kaiming_normal_(fan_in); Conv +
            ReLU -> kaiming_normal_(fan_out); Linear/Conv + tanh/sigmoid ->
            xavier_uniform_ with that gain; + SELU -> LeCun normal; the
            activation is found through dropout, normalisation, pooling,
            padding, resampling and reshaping; RNN / GRU / LSTM and their
            cells: weight_hh -> orthogonal_ per gate block (GRU: 3, LSTM: 4),
            weight_ih -> xavier_uniform_; Embedding
            -> normal(0, 0.01); biases -> zeros; norms -> ones/zeros; PReLU
            slopes -> their init value), "kaiming", "xavier", "gpt2" (normal
            0.02, residual projections -- c_proj, out_proj, o_proj, proj,
            down_proj, dense_4h_to_h, linear2, fc2, w2, wo -- / sqrt(2
            n_layers)) or "torch" (what reset_parameters draws, including
            MultiheadAttention's, Bilinear's and nn.Transformer's own
            rules). Parameters with no element are planned as no-ops.
        skip: parameter names (or module prefixes) to leave untouched, or a
            predicate ``(name, param) -> bool``. A name that matches nothing
            raises ``ValueError``.
        n_layers: layer count for "gpt2" (default: ``model.config.n_layer``,
            else the number of blocks holding a residual projection in the
            largest ModuleList / Sequential, marked GUESSED).

    Returns:
        An :class:`InitPlan`; ``print(plan)`` shows a table. The activation
        after each layer comes from a torch.fx trace when the model traces,
        from module order otherwise, and for layers inside a torch.nn leaf
        module the fx graph does not enter (TransformerEncoderLayer: its
        ``activation``); such entries say GUESSED. A guess from module order
        depends on the order the modules were registered in.
    """
    schemes = ("auto", "kaiming", "xavier", "gpt2", "torch")
    if scheme not in schemes:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {schemes}")
    skip_fn = _skip_fn(skip, module)
    lazy = [n for n, p in module.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise ValueError(
            f"parameters {lazy} are not materialised yet (lazy modules such as nn.LazyLinear): run one forward "
            "pass first, which gives them their shapes"
        )
    acts: dict[str, _Act | None] = {}
    guessed_acts: set[str] = set()
    traced = False
    if scheme == "auto":
        fx = _fx_activations(module)
        traced = fx is not None
        order = _order_activations(module)
        if fx is None:
            acts = order
        else:
            guessed_acts = set(order) - set(fx)
            acts = {**order, **fx}
    n_from = "argument n_layers" if n_layers is not None else ""
    if scheme == "gpt2" and n_layers is None:
        n_layers, n_from = _count_layers(module)
    modules = dict(module.named_modules())
    in_transformer: set[str] = set()
    for prefix, m in modules.items():
        if isinstance(m, nn.Transformer):
            in_transformer.update(n for n in modules if not prefix or n == prefix or n.startswith(prefix + "."))
    ctx = _Context(acts, guessed_acts, traced, n_layers, n_from, modules, in_transformer, {id(m): n for n, m in modules.items()})
    out = InitPlan(scheme=scheme, traced=traced)
    order = _param_order(module)
    for full, m, pname in sorted(_canonical_names(module).values(), key=lambda a: order.get(a[0], 0)):
        p = getattr(m, pname)
        if skip_fn(full, p):
            continue
        mname = full[: -len(pname) - 1] if full != pname else ""
        if p.numel() == 0:  # as torch.nn.init on it: a no-op (its fans may be 0)
            out.entries.append(_entry(full, p, "none (no elements)", None, "zero-element parameter: nothing to draw"))
            continue
        entry = _parametrized_rule(scheme, mname, m, pname, p, ctx) if _is_parametrization(m) else None
        entry = entry or _old_weight_norm_rule(full, m, pname, p)
        out.entries.append(entry or _layer_rule(scheme, mname, m, pname, p, ctx))
    return out


def _old_weight_norm_rule(full: str, m: nn.Module, pname: str, p: Tensor) -> PlanEntry | None:
    """torch.nn.utils.weight_norm (the deprecated hook form): ``weight_g`` is
    the norm of ``weight_v`` (which the layer's rule draws), as it sets them."""
    for hook in m._forward_pre_hooks.values():
        name = getattr(hook, "name", None)
        if type(hook).__name__ == "WeightNorm" and name is not None and pname == f"{name}_g":
            v_name = full[: -len("_g")] + "_v"
            return _weight_norm_g_entry(full, p, v_name, getattr(hook, "dim", 0), f"{type(m).__name__}.{name}")
    return None


def _weight_norm_g_entry(full: str, p: Tensor, v_name: str, dim: int | None, tensor: str) -> PlanEntry:
    """weight_norm's magnitude g (either form): set to ||v|| once v is drawn."""
    return _entry(
        full, p, f"norm of {v_name.rpartition('.')[2]} (weight_norm magnitude)", None,
        f"weight_norm of {tensor}: g = ||v||, so the weight starts as v",
        norm_of=(v_name, -1 if dim is None else dim),
    )


def _layer_name(m: nn.Module) -> str:
    """'Linear' for a parametrized Linear (torch names its class ParametrizedLinear)."""
    name = type(m).__name__
    return name[len("Parametrized"):] if name.startswith("Parametrized") else name


def _is_parametrization(m: nn.Module) -> bool:
    return isinstance(m, torch.nn.utils.parametrize.ParametrizationList)


def _parametrized_rule(
    scheme: str, mname: str, plist: nn.Module, pname: str, p: Tensor, ctx: _Context
) -> PlanEntry | None:
    """A parametrized tensor (torch.nn.utils.parametrize: spectral_norm,
    weight_norm, orthogonal, ...), planned by its layer's rule for the tensor it
    stands for: ``<layer>.parametrizations.weight.original`` of a Linear
    followed by ReLU gets that Linear's Kaiming init. weight_norm's direction
    ``original1`` gets the rule and its magnitude ``original0`` the norm of it,
    as torch's weight_norm sets them from a weight. None: not a layout known
    here (the caller's unknown-module rule applies)."""
    parts = mname.split(".")
    if len(parts) < 2 or parts[-2] != "parametrizations":
        return None
    owner_name, tensor_name = ".".join(parts[:-2]), parts[-1]
    owner = ctx.modules.get(owner_name)
    if owner is None:
        return None
    full = f"{mname}.{pname}"
    weight_norm = len(plist) == 1 and type(plist[0]).__name__ == "_WeightNorm"
    if weight_norm and pname == "original0":
        return _weight_norm_g_entry(
            full, p, f"{mname}.original1", getattr(plist[0], "dim", 0), f"{_layer_name(owner)}.{tensor_name}"
        )
    if pname != "original" and not (weight_norm and pname == "original1"):
        return None
    rule = _layer_rule(scheme, owner_name, owner, tensor_name, p, ctx)
    what = "weight_norm direction v" if weight_norm else f"parametrized ({type(plist[0]).__name__})"
    reason = rule.reason
    pad = getattr(owner, "padding_idx", None)
    if isinstance(owner, (nn.Embedding, nn.EmbeddingBag)) and pad is not None and _stored_weight(owner) is None:
        reason = reason.replace(f"padding row {pad} zeroed", f"padding row {pad} not zeroed (parametrized)")
    return dataclasses.replace(rule, name=full, key=key_of(full), reason=f"{reason}; {what}")


def _param_order(module: nn.Module) -> dict[str, int]:
    """Position of every parameter name (aliases included) in registration order, for the plan's row order."""
    return {name: i for i, (name, _) in enumerate(module.named_parameters(remove_duplicate=False))}


@torch.no_grad()
def init_module_(
    module: nn.Module,
    scheme: str | InitPlan = "auto",
    seed: int | None = 0,
    *,
    skip: Iterable[str] | Callable[[str, Tensor], bool] | None = None,
    n_layers: int | None = None,
) -> InitPlan:
    """Initialise every parameter of ``module`` by a plan, in one fused call per device.

    Args:
        module: the model.
        scheme: a scheme name (see :func:`plan`) or a plan from it.
        seed: 64-bit seed; keys come from the parameter names, relative to
            ``module``. The default, 0, is fixed: every call gives the same
            values, on any device and any sharding, whatever
            ``torch.manual_seed`` says. So two modules with the same
            parameter names initialised by separate calls (the blocks of a
            ModuleList one by one, twin critics, ensemble members) come out
            identical unless each call gets its own seed. ``None`` draws the
            seed from torch's default generator, as the drawing functions
            do: ``torch.manual_seed`` then controls it and calls differ (for
            a sharded model, rank 0's draw, broadcast over the mesh).
        skip: names / prefixes / predicate of parameters to leave untouched.
        n_layers: for scheme "gpt2".

    Returns:
        The plan that was applied.
    """
    the_plan = scheme if isinstance(scheme, InitPlan) else plan(module, scheme, skip=skip, n_layers=n_layers)
    return _apply_plan(module, the_plan, seed, skip)


def _apply_plan(
    module: nn.Module,
    the_plan: InitPlan,
    seed: int | None,
    skip: Iterable[str] | Callable[[str, Tensor], bool] | None,
) -> InitPlan:
    """init_module_ once it has a plan (materialize_ calls it directly, so that
    warnings point at either one's caller)."""
    params = dict(module.named_parameters(remove_duplicate=False))  # a plan may name a tied weight by any alias
    skip_fn = _skip_fn(skip, module)
    _check_plan_shapes(the_plan, params)
    draws: list[tuple[Tensor, InitSpec, int]] = []
    ortho_entries: list[tuple[Tensor, PlanEntry]] = []
    norms: list[tuple[Tensor, Tensor, int]] = []  # weight_norm: (g, v, dim), set once v is drawn
    for e in the_plan:
        p = params.get(e.name)
        if p is None or skip_fn(e.name, p):
            continue
        if e.norm_of is not None and params.get(e.norm_of[0]) is not None:
            norms.append((p, params[e.norm_of[0]], e.norm_of[1]))
            continue
        if e.spec is not None and e.spec.kind == "constant" and e.spec.a == 0.0 and p.dim() >= 2:
            warnings.warn(
                f"trainops.init: the plan zero-initialises {e.name} of shape {tuple(p.shape)}: "
                "symmetry is never broken",
                UserWarning,
                stacklevel=4,  # _apply_plan, init_module_ / materialize_, no_grad's wrapper, the caller
            )
        if e.scheme.startswith("orthogonal_"):
            ortho_entries.append((p, e))
        elif e.spec is not None:
            draws.append((p, e.spec, e.key))
    drawn = {id(d[0]) for d in draws} | {id(p) for p, _ in ortho_entries}
    # Everything this call draws goes into one fused call (one launch per
    # device): the parameters; the Gaussians of the orthogonal ones, whose QR
    # follows; spectral_norm's power-iteration vectors, warmed after.
    ortho_jobs, ortho_slices = _orthogonal_jobs(ortho_entries)
    spectral = _spectral_sites_to_warm(module, drawn)
    tensors: list[Tensor] = []
    specs: list[InitSpec] = []
    keys: list[int] = []
    layouts: list[tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = []

    def add(t: Tensor, spec: InitSpec, key: int) -> None:
        # Sharded tensors (DTensor: FSDP2, tensor parallel) are drawn on their
        # local shard only, at its offset in the global tensor: every rank
        # writes its own elements with the values the unsharded model gets.
        local, global_shape, offset = _shard_layout(t)
        tensors.append(local)
        specs.append(spec)
        keys.append(key)
        layouts.append((global_shape, offset))

    for p, spec, key in draws:
        add(p, spec, key)
    unit = InitSpec.normal(0.0, 1.0)
    for job in ortho_jobs:
        for gauss, key in zip(job.gauss.unbind(0), job.keys):
            add(gauss, unit, key)
    for site, _, u, v in spectral:
        add(u, unit, key_of(site.u_name))
        add(v, unit, key_of(site.v_name))
    if tensors:
        sharded = any(g is not None for g, _ in layouts)
        _init_tensors(  # (the zero-init warning was given above, by name)
            tensors,
            specs,
            seed,
            keys,
            [g for g, _ in layouts] if sharded else None,
            [o for _, o in layouts] if sharded else None,
            dtensors=[p for p, _, _ in draws] + [p for p, _ in ortho_entries] if sharded else (),
        )
    # As nn.Embedding.reset_parameters: the padding row starts at zero.
    drawn_by_spec = {id(d[0]) for d in draws}
    for m in module.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.padding_idx is not None:
            weight = _stored_weight(m)  # never m.weight of a parametrized layer: computing it runs them
            if weight is not None and id(weight) in drawn_by_spec:
                _zero_row(weight, m.padding_idx % weight.shape[0])
    for job in ortho_jobs:
        _orthogonal_finish(job.targets, job.gains, job.gauss, job.shape)
    for local, full, offset in ortho_slices:
        local.copy_(full[tuple(slice(o, o + n) for o, n in zip(offset, local.shape))])
    for g, v, dim in norms:
        if g.device.type != "meta" and v.device.type != "meta":
            g.copy_(torch.norm_except_dim(v, 2, dim))
    _warm_spectral_norms(spectral)
    return the_plan


def _stored_weight(m: nn.Module) -> Tensor | None:
    """The tensor that holds a layer's weight: the parameter itself, or the one
    original of a parametrization that keeps its shape (spectral_norm); None
    for others (weight_norm's v and g)."""
    if not torch.nn.utils.parametrize.is_parametrized(m, "weight"):
        return m.weight
    plist = m.parametrizations.weight
    if hasattr(plist, "original") and len(plist) == 1 and type(plist[0]).__name__ == "_SpectralNorm":
        return plist.original
    return None


class _SpectralSite(NamedTuple):
    """One spectral_norm of a model: its u and v buffers' names, and either the
    parametrization (``plist[index]``) or the deprecated hook on ``layer``."""

    u_name: str
    v_name: str
    layer: nn.Module
    plist: Any  # ParametrizationList, or None for the hook form
    index: int
    norm: Any  # _SpectralNorm, or the SpectralNorm hook


def _spectral_norm_sites(module: nn.Module) -> Iterator[_SpectralSite]:
    """Every spectral_norm in ``module``: torch.nn.utils.parametrizations.
    spectral_norm at any place in a parametrization list, and the deprecated
    hook of torch.nn.utils.spectral_norm."""
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        if torch.nn.utils.parametrize.is_parametrized(m):
            for tensor_name, plist in m.parametrizations.items():
                for i, par in enumerate(plist):
                    if type(par).__name__ == "_SpectralNorm":
                        where = f"{prefix}parametrizations.{tensor_name}.{i}."
                        yield _SpectralSite(where + "_u", where + "_v", m, plist, i, par)
        for hook in m._forward_pre_hooks.values():
            if type(hook).__name__ == "SpectralNorm":
                yield _SpectralSite(f"{prefix}{hook.name}_u", f"{prefix}{hook.name}_v", m, None, 0, hook)


def _spectral_sites_to_warm(
    module: nn.Module, drawn: set[int]
) -> list[tuple[_SpectralSite, Tensor, Tensor, Tensor]]:
    """The spectral_norms whose weight this call draws, with their (u, v)
    buffers: those are drawn with the weights and warmed by
    :func:`_warm_spectral_norms` after."""
    sites = []
    for site in _spectral_norm_sites(module):
        sn = site.norm
        if site.plist is not None:  # the parametrization
            if not hasattr(site.plist, "original") or not all(
                hasattr(sn, a) for a in ("_u", "_v", "_power_method", "_reshape_weight_to_matrix")
            ):
                continue
            original, u, v = site.plist.original, sn._u, sn._v
        else:  # the hook form
            original, u, v = (getattr(site.layer, sn.name + suffix, None) for suffix in ("_orig", "_u", "_v"))
            if u is None or v is None or not hasattr(sn, "reshape_weight_to_matrix"):
                continue
        if original is None or id(original) not in drawn or _on_meta(original):
            continue
        sites.append((site, original, u, v))
    return sites


def _warm_spectral_norms(sites: list[tuple[_SpectralSite, Tensor, Tensor, Tensor]]) -> None:
    """spectral_norm keeps power-iteration vectors (u, v) for its weight's top
    singular value; for a redrawn weight they are stale (seen: sigma 16.8
    instead of ~1 in eval mode). As torch does when it registers spectral_norm:
    unit Gaussian u and v -- drawn from the counter RNG with the weights, keyed
    by the buffers' names, so they are the same for any call, thread count or
    sharding -- normalised, then 15 power iterations on one CPU thread."""
    for site, original, u, v in sites:
        sn = site.norm
        value = _whole(original)
        if value is None:
            continue
        for earlier in list(site.plist)[: site.index] if site.plist is not None else ():
            training = earlier.training  # its input, without a power-iteration step of an earlier spectral_norm
            earlier.train(False)
            value = earlier(value)
            earlier.train(training)
        with _one_cpu_thread(value.device):
            u.copy_(torch.nn.functional.normalize(u, dim=0, eps=sn.eps))
            v.copy_(torch.nn.functional.normalize(v, dim=0, eps=sn.eps))
            if site.plist is not None:
                sn._power_method(sn._reshape_weight_to_matrix(value), 15)
            else:
                mat = sn.reshape_weight_to_matrix(value)
                for _ in range(15):  # torch.nn.utils.spectral_norm's order: v first
                    v.copy_(torch.nn.functional.normalize(torch.mv(mat.t(), u), dim=0, eps=sn.eps))
                    u.copy_(torch.nn.functional.normalize(torch.mv(mat, v), dim=0, eps=sn.eps))


def _whole(t: Tensor) -> Tensor | None:
    """The whole tensor (a DTensor gathered: every rank runs this alike), or None on meta."""
    if distributed.is_dtensor(t):
        t = t.full_tensor()
    return None if t.device.type == "meta" else t


class _OrthoJob(NamedTuple):
    """Same-shaped orthogonal blocks: their Gaussians (drawn with one key each
    in init_module_'s fused call), then one batched QR into ``targets``."""

    shape: tuple[int, ...]
    targets: list[Tensor]
    gains: list[float]
    keys: list[int]
    gauss: Tensor


def _orthogonal_jobs(
    entries: list[tuple[Tensor, PlanEntry]],
) -> tuple[list[_OrthoJob], list[tuple[Tensor, Tensor, tuple[int, ...]]]]:
    """The orthogonal entries of a plan as one job per block shape, dtype and
    device, and the (local shard, whole matrix, offset) copies that follow.

    Orthogonality couples every element of a matrix, so a shard cannot be
    drawn alone: for a sharded parameter each rank builds the whole (small:
    recurrent weights are hidden x hidden per gate) matrix from the same
    counter RNG and keeps its slice; values equal the unsharded ones. Gate
    block g of a parameter draws with the key of "<name>.gate<g>".
    """
    groups: dict[tuple, list[tuple[Tensor, float, int]]] = {}  # block shape, dtype, device -> (target, gain, key)
    slices: list[tuple[Tensor, Tensor, tuple[int, ...]]] = []  # (local shard, full matrix, offset)
    for p, e in entries:
        local, global_shape, offset = _shard_layout(p)
        if local.device.type == "meta":
            continue
        target = local
        if global_shape is not None:
            target = torch.empty(global_shape, dtype=local.dtype, device=local.device)
            slices.append((local, target, offset))
        rows = target.shape[0] // e.blocks
        for g in range(e.blocks):
            block = target if e.blocks == 1 else target[g * rows : (g + 1) * rows]
            key = e.key if e.blocks == 1 else key_of(f"{e.name}.gate{g}")
            groups.setdefault((tuple(block.shape), block.dtype, block.device), []).append((block, e.gain or 1.0, key))
    jobs = [
        _OrthoJob(
            shape,
            [b for b, _, _ in group],
            [g for _, g, _ in group],
            [_to_i64(k) for _, _, k in group],
            _orthogonal_gauss(len(group), shape, dtype, device),
        )
        for (shape, dtype, device), group in groups.items()
    ]
    return jobs, slices


def _check_plan_shapes(the_plan: InitPlan, params: dict[str, Tensor]) -> None:
    """A plan made for another model (or before a layer was resized) would draw
    with the wrong fans: refuse it before anything is written."""
    for e in the_plan:
        p = params.get(e.name)
        if p is not None and tuple(p.shape) != tuple(e.shape):
            raise ValueError(
                f"the plan's entry for {e.name} has shape {tuple(e.shape)} but the parameter has shape "
                f"{tuple(p.shape)}: make the plan from this model"
            )


def _shard_layout(p: Tensor) -> tuple[Tensor, tuple[int, ...] | None, tuple[int, ...] | None]:
    """(local tensor, global shape, offset of the local shard) of a parameter;
    shape and offset are None for an ordinary (unsharded) tensor."""
    if not distributed.is_dtensor(p):
        return p, None, None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _refuse_partial(p)
    local_shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    _check_one_block(p, tuple(local_shape), tuple(offset))
    return p._local_tensor, tuple(p.shape), tuple(offset)


# Reductions of identical values that give the value back: a Partial DTensor
# with one of these holds what every rank writes.
_IDEMPOTENT_REDUCTIONS = ("avg", "max", "min")


def _refuse_partial(p: Tensor) -> None:
    """Refuse a DTensor with a Partial placement whose reduction is a sum (or
    a p-norm): each rank writes the full values into its local part, so the
    DTensor would hold world-size times them (torch's fills do so). An
    ``avg``, ``max`` or ``min`` Partial holds the values, as they are the same
    on every rank."""
    if distributed.is_dtensor(p) and any(
        isinstance(pl, distributed.Partial) and getattr(pl, "reduce_op", "sum") not in _IDEMPOTENT_REDUCTIONS
        for pl in p.placements
    ):
        raise ValueError(
            f"cannot initialise a DTensor with a Partial placement ({p.placements}): its value is a reduction "
            "(a sum) of the ranks' local tensors; redistribute it to Replicate or Shard first"
        )


def _check_one_block(p: Tensor, local_shape: tuple[int, ...], offset: tuple[int, ...]) -> None:
    """Refuse a DTensor whose local shards are not each one block of the
    global tensor, which the kernels' (global shape, offset) layout cannot
    describe: a strided shard (``_StridedShard``) can hold rows 0-1 and 4-5
    of 8. FSDP2 over tensor parallelism stacks one on a Shard of the same
    dimension, which is one block again: that passes. Checked by running the
    placements' own split on index vectors, without communication, for every
    rank's coordinate (so that all ranks refuse together: a rank that went on
    would wait in the seed's broadcast), and this rank's block against its
    offset."""
    strided = [d for d, pl in enumerate(p.placements) if type(pl).__name__ == "_StridedShard"]
    if not strided:
        return
    mesh = p.device_mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:  # this rank is not in the mesh: it holds nothing
        return
    for dim in sorted({p.placements[d].dim for d in strided}):
        sizes = tuple(mesh.size(m) for m in range(mesh.ndim))
        blocks = _blocks_along(p.shape[dim], dim, p.dim(), tuple(p.placements), sizes)
        mine = blocks[tuple(coordinate)]
        if mine is None or (local_shape[dim] and mine != (offset[dim], local_shape[dim])):
            raise NotImplementedError(
                f"this DTensor's placements {tuple(p.placements)} give some rank elements of dimension {dim} "
                "that are not one block: trainops.init draws a shard as one block at its offset. Initialise "
                "the tensor with other placements (e.g. Shard) and redistribute it"
            )


@functools.lru_cache(maxsize=256)
def _blocks_along(size: int, dim: int, ndim: int, placements: tuple[Any, ...], mesh_sizes: tuple[int, ...]) -> dict:
    """Per mesh coordinate: (first, length) of the global indices of dimension
    ``dim`` that the placements give it, or None for all coordinates when some
    coordinate's indices are not one block. Cached: FSDP2 over tensor
    parallelism gives many parameters the same few layouts."""
    out: dict[tuple[int, ...], tuple[int, int] | None] = {}
    one_block = True
    for coordinate in itertools.product(*(range(n) for n in mesh_sizes)):
        # The global indices, shaped so that the placements split them along
        # their own dimension, as distribute_tensor splits the data.
        held = torch.arange(size).reshape([-1 if d == dim else 1 for d in range(ndim)])
        for mesh_dim, pl in enumerate(placements):
            if getattr(pl, "dim", None) != dim or not hasattr(pl, "_split_tensor"):
                continue
            chunks, _ = pl._split_tensor(held, mesh_sizes[mesh_dim], with_padding=False)
            c = coordinate[mesh_dim]
            held = chunks[c] if c < len(chunks) else held.narrow(dim, 0, 0)
        held = held.reshape(-1)
        n = held.numel()
        if n and not torch.equal(held, torch.arange(int(held[0]), int(held[0]) + n)):
            one_block = False
        out[coordinate] = (int(held[0]) if n else 0, n)
    return out if one_block else dict.fromkeys(out)


def _on_meta(t: Tensor) -> bool:
    """On the meta device (for a DTensor: its local shard, FSDP2's meta init).
    Asked of every tensor, including ones not to be written: no layout checks."""
    local = t._local_tensor if distributed.is_dtensor(t) else t
    return local.device.type == "meta"


def _zero_row(weight: Tensor, row: int) -> None:
    local, _, offset = _shard_layout(weight)
    if local.device.type == "meta":
        return
    first = offset[0] if offset is not None else 0
    if first <= row < first + local.shape[0]:
        local[row - first].zero_()


@torch.no_grad()
def materialize_(
    module: nn.Module,
    device: torch.device | str,
    scheme_or_plan: str | InitPlan = "auto",
    seed: int | None = 0,
    *,
    skip: Iterable[str] | Callable[[str, Tensor], bool] | None = None,
) -> InitPlan:
    """Allocate a model built under ``torch.device("meta")`` on ``device`` and initialise it.

    The values are exactly those :func:`init_module_` gives with the same
    scheme and seed. Norm layers' running statistics are reset; any other
    buffer that was on the meta device is zero-filled, with a warning naming
    it (its real value is not known here). Parameters and buffers that are not
    on the meta device keep their values (moved to ``device``). A plan that
    does not cover every meta parameter (one made for another model) raises
    ``ValueError`` before anything is allocated.

    Args:
        module: the model (parameters on the meta device; any that are not keep their values).
        device: where to allocate it.
        scheme_or_plan: a scheme name or a plan from :func:`plan`.
        seed: 64-bit seed, fixed (0) by default; ``None`` draws it from
            torch's default generator (see :func:`init_module_`).
        skip: parameters to leave uninitialised (allocated only).

    Returns:
        The plan that was applied.
    """
    the_plan = scheme_or_plan if isinstance(scheme_or_plan, InitPlan) else plan(module, scheme_or_plan, skip=skip)
    skip_fn = _skip_fn(skip, module)
    params = dict(module.named_parameters(remove_duplicate=False))
    _check_plan_shapes(the_plan, params)
    # Every parameter is newly allocated: one the plan does not draw (and skip
    # does not name) would be left holding whatever the allocator returned.
    planned = {id(params[e.name]) for e in the_plan if e.name in params}
    uncovered = [
        name for name, p in module.named_parameters()
        if id(p) not in planned and not skip_fn(name, p) and _on_meta(p)
    ]
    if uncovered:
        raise ValueError(
            f"the plan has no entry for {uncovered}: materialize_ would leave them uninitialised; make the "
            "plan from this model, or name them in skip="
        )
    # Names of what is on the meta device, read before to_empty (which may
    # move a DTensor's shard in place).
    on_meta = {name for name, p in params.items() if _on_meta(p)}
    # Tensors that are not on the meta device keep their values (moved to device).
    kept = {name: t.detach().clone() for name, t in list(module.named_parameters()) + list(module.named_buffers())
            if not _on_meta(t)}
    meta_buffers = [name for name, b in module.named_buffers() if b.device.type == "meta"]
    # to_empty gives every module its own tensors: remember tied parameters
    # (e.g. an output layer sharing the embedding) and tie them again after.
    first: dict[int, tuple[nn.Module, str]] = {}
    ties: list[tuple[nn.Module, str, nn.Module, str]] = []
    for m in module.modules():
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in first:
                ties.append((m, pname, *first[id(p)]))
            else:
                first[id(p)] = (m, pname)
    module.to_empty(device=device)
    for m, pname, src, src_name in ties:
        setattr(m, pname, getattr(src, src_name))
    now = dict(module.named_parameters())
    now.update(module.named_buffers())
    for name, value in kept.items():
        if name in now:
            now[name].copy_(value)
    unknown = []
    norm_buffers = set()
    for mname, m in module.named_modules():
        if (
            isinstance(m, nn.modules.batchnorm._NormBase)
            and m.track_running_stats
            and (f"{mname}.running_mean" if mname else "running_mean") in meta_buffers
        ):
            m.reset_running_stats()
            norm_buffers.update(f"{mname}.{b}" if mname else b for b in ("running_mean", "running_var", "num_batches_tracked"))
    # spectral_norm's power-iteration vectors are drawn and warmed up by
    # init_module_ (_warm_spectral_norms) once its weight is drawn.
    spectral = {name for site in _spectral_norm_sites(module) for name in (site.u_name, site.v_name)}
    buffers = dict(module.named_buffers())
    for name in meta_buffers:
        if name not in norm_buffers and name in buffers:
            buffers[name].zero_()
            if name not in spectral:
                unknown.append(name)
    if unknown:
        warnings.warn(
            f"trainops.init.materialize_: buffers {unknown} were on the meta device and are zero-filled; "
            "set their real values after materialize_",
            UserWarning,
            stacklevel=3,
        )
    # Only what was on the meta device is drawn: a parameter that already had
    # values keeps them.
    # By identity (the tensors to_empty made), not by name: skip= predicates are
    # also asked about a tensor's other names (tied weights, "<layer>.weight"
    # of a parametrized one), which need not be on_meta's.
    drawn = {id(p) for name, p in module.named_parameters(remove_duplicate=False) if name in on_meta}
    return _apply_plan(module, the_plan, seed, lambda name, p: id(p) not in drawn or skip_fn(name, p))
