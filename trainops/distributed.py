"""Global gradient norms of sharded models, through torch.distributed.

trainops builds on PyTorch's distributed engine (DTensor, FSDP2 ``fully_shard``,
tensor parallelism, process groups), never its own. The clipping functions
accept DTensor gradients and plain tensors sharded by hand (``process_group=``);
the fused kernels run on each rank's local shards and one all-reduce per
process group combines the partial results:

* the partial of a group is the sum of ``|x|^p`` over the rank's local shards,
  formed in float64 from the kernel's norm (``norm ** p``); it is all-reduced
  with SUM (MAX for ``inf``), and the global norm is ``total ** (1/p)``; an
  order other than 1, 2 and inf first all-reduces the max and sums
  ``(norm / max) ** p`` (one more collective), so no power overflows;
* a DTensor is sharded over the mesh dimensions whose placement is neither
  ``Replicate`` nor ``Partial`` (``Shard``, FSDP2-over-TP's ``_StridedShard``);
  replicated dimensions are counted once (no reduction over them); ``Partial``
  gradients are reduced to replicated first, one full-size redistribute per
  such tensor (with sequence parallelism that is every LayerNorm gradient);
* plain tensors belong to ``process_group`` unless marked with
  :func:`mark_replicated` (e.g. tensor-parallel layer norms), which are counted
  once, locally;
* tensors that share (mesh, sharded dims) or process group form one bucket:
  one collective per bucket, never one per parameter.

The returned total is a plain tensor holding the true global norm, identical on
every rank. (torch.nn.utils returns a DTensor whose value is only right after
``full_tensor()``.) Nothing syncs with the host beyond what the collectives
themselves need.

Cost per step and rank (see docs/distributed.md): one read of the local shards
(model bytes / shard count), plus one all-reduce of 8 bytes per bucket (8 bytes
per parameter for :func:`trainops.grad_norms`), i.e. latency-bound
``buckets * log2(ranks) * alpha`` on a tree/ring all-reduce.

float64 partial sums hold any fp32/fp16/bf16 norm for p = 1 and 2; fp64
gradients with norms above ~1e154 (p = 2) overflow the partial and give inf.

Every rank of a process group must take part: with ``process_group=`` a rank
whose tensors all lack a gradient still joins the all-reduce (with zero), but
``grad_norms`` needs the same number of gradients on every rank, and DTensor
gradients must exist on every rank of their mesh (as in torch). A replica that
has diverged (NaN on one rank of a Replicate dimension) is not compared across
ranks: ``error_if_nonfinite`` then decides per rank.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

try:
    from torch.distributed.tensor import DTensor, Partial, Replicate
except ImportError:  # torch built without distributed
    DTensor = None  # type: ignore[assignment,misc]

__all__ = ["is_dtensor", "mark_replicated", "is_replicated", "local_tensors", "has_dtensor"]

_REPLICATED_ATTR = "_trainops_replicated"


def is_dtensor(t: Any) -> bool:
    """True for a torch.distributed.tensor.DTensor."""
    return DTensor is not None and isinstance(t, DTensor)


def has_dtensor(tensors: list[Tensor]) -> bool:
    return DTensor is not None and any(isinstance(t, DTensor) for t in tensors)


_ANY_MARKED = False


def any_marked() -> bool:
    """Has mark_replicated ever been called? (Skips a per-tensor scan if not.)"""
    return _ANY_MARKED


def mark_replicated(*tensors: Tensor) -> None:
    """Mark parameters (or gradients) as replicated across the process group.

    Their norm is counted once instead of being summed over the group, e.g.
    layer norms under tensor parallelism, whose every rank holds the full copy.
    Marking a parameter covers its ``.grad``: the clipping functions read the
    mark from the parameter, and every gradient that backward accumulates into
    it is marked too, so ``get_total_norm`` over the gradients sees it (a
    gradient assigned by hand is not: mark it, or pass the parameters). The
    mark is an attribute of the tensor: ``copy.deepcopy`` of a model (an EMA
    or teacher copy) does not carry it (torch's ``Parameter.__deepcopy__``
    copies no attributes), so mark the copy's parameters again.

    Args:
        tensors: parameters or plain tensors.
    """
    global _ANY_MARKED
    _ANY_MARKED = True
    for t in tensors:
        already = is_replicated(t)
        setattr(t, _REPLICATED_ATTR, True)
        if not already and t.is_leaf and t.requires_grad:
            t.register_post_accumulate_grad_hook(_mark_grad)
        if t.grad is not None:
            setattr(t.grad, _REPLICATED_ATTR, True)


def _mark_grad(param: Tensor) -> None:
    if param.grad is not None:
        setattr(param.grad, _REPLICATED_ATTR, True)


def is_replicated(t: Tensor) -> bool:
    return bool(getattr(t, _REPLICATED_ATTR, False))


def has_partial(t: Tensor) -> bool:
    """A DTensor holding unreduced partial values (a ``Partial`` placement)."""
    return is_dtensor(t) and any(isinstance(pl, Partial) for pl in t.placements)


def _unpartial(t: Tensor) -> Tensor:
    placements = [Replicate() if isinstance(pl, Partial) else pl for pl in t.placements]
    return t.redistribute(t.device_mesh, placements)


def local_tensors(tensors: list[Tensor]) -> list[Tensor]:
    """The local shards of DTensors (views sharing storage), plain tensors as they are."""
    if not has_dtensor(tensors):
        return tensors
    return [t._local_tensor if is_dtensor(t) else t for t in tensors]


Bucket = tuple[list[Any], list[int], list[Tensor]]  # (groups, indices into the input, local tensors)


def _sharded_dims(placements: Any) -> tuple[int, ...]:
    """The mesh dims a DTensor is split over: every placement that is neither
    Replicate nor Partial -- Shard, and the _StridedShard of FSDP2 over tensor
    parallelism, which is not a Shard subclass in torch >= 2.13."""
    return tuple(d for d, pl in enumerate(placements) if not (pl.is_replicate() or pl.is_partial()))


def _buckets(tensors: list[Tensor], flags: list[bool] | None, process_group: Any) -> list[Bucket]:
    """Group tensors by the collectives they need, in order of first appearance.

    A DTensor's bucket depends only on its (mesh, placements): it is resolved
    once per distinct pair (a model has a handful), not once per parameter.
    """
    buckets: dict[tuple, Bucket] = {}
    layouts: dict[tuple, tuple[tuple, list[Any], bool]] = {}
    by_spec: dict[int, tuple[tuple, list[Any], bool]] = {}  # FSDP2 shares spec objects
    for i, t in enumerate(tensors):
        if DTensor is not None and isinstance(t, DTensor):
            spec = t._spec
            resolved = by_spec.get(id(spec))
            if resolved is None:
                layout = (id(spec.mesh), spec.placements)
                if layout not in layouts:
                    mesh = spec.mesh
                    dims = _sharded_dims(spec.placements)
                    has_partial = any(isinstance(pl, Partial) for pl in spec.placements)
                    layouts[layout] = (("mesh", id(mesh), dims), [mesh.get_group(d) for d in dims], has_partial)
                resolved = by_spec[id(spec)] = layouts[layout]
            key, groups, has_partial = resolved
            if has_partial:
                t = _unpartial(t)
            local = t._local_tensor
        else:
            local = t
            if (flags is not None and flags[i]) or process_group is None:
                key, groups = ("local",), []
            else:
                key, groups = ("group", id(process_group)), [process_group]
        entry = buckets.get(key)
        if entry is None:
            entry = buckets[key] = (groups, [], [])
        entry[1].append(i)
        entry[2].append(local)
    if process_group is not None:
        # The group's bucket goes last on every rank, whatever this rank holds
        # (an empty one when all its tensors are DTensors or marked replicated,
        # or it has none): every rank joins the group's all-reduce, in the same
        # order relative to the mesh collectives.
        key = ("group", id(process_group))
        buckets[key] = buckets.pop(key, ([process_group], [], []))
    return list(buckets.values())


class _Plan:
    """The buckets of one list of DTensors, resolved from their specs once.

    ``buckets`` holds (mesh, sharded mesh dims, indices) per bucket in order of
    first appearance, exactly as :func:`_buckets` orders them (the order fixes
    the float64 sum of the partials), or is None when a spec has a ``Partial``
    placement (those need a redistribute every call: the general path).

    A plan is valid for a list whose specs are the very objects it was built
    from (it holds them, so their ids cannot be reused) and whose distinct
    specs still have the mesh and placements they had then (torch does not
    expect them to change; checked anyway). FSDP2 shares spec objects: the
    1,000 parameters of benchmarks/bench_distributed.py have 2, so the check
    is a few attribute reads per call.
    """

    __slots__ = ("specs", "checks", "buckets")

    def __init__(self, specs: list[Any]) -> None:
        self.specs = specs
        self.checks: list[tuple[Any, Any, tuple]] = []
        by_spec: dict[int, int] = {}  # id(spec) -> bucket position
        by_layout: dict[tuple, int] = {}  # (id(mesh), sharded dims) -> bucket position
        buckets: list[tuple[Any, tuple[int, ...], list[int]]] = []
        partial = False
        for i, spec in enumerate(specs):
            b = by_spec.get(id(spec))
            if b is None:
                mesh, placements = spec.mesh, spec.placements
                self.checks.append((spec, mesh, placements))
                partial = partial or any(isinstance(pl, Partial) for pl in placements)
                dims = _sharded_dims(placements)
                b = by_layout.get((id(mesh), dims))
                if b is None:
                    b = by_layout[(id(mesh), dims)] = len(buckets)
                    buckets.append((mesh, dims, []))
                by_spec[id(spec)] = b
            buckets[b][2].append(i)
        self.buckets = None if partial else buckets

    def valid_for(self, specs: list[Any]) -> bool:
        return all(map(operator.is_, specs, self.specs)) and all(
            s.mesh is mesh and s.placements is placements for s, mesh, placements in self.checks
        )


_PLANS: dict[tuple[int, int, int], _Plan] = {}
_MAX_PLANS = 16


def dtensor_buckets(tensors: list[Tensor]) -> tuple[list[Bucket], list[Tensor]] | None:
    """Buckets of a list of DTensors without Partial placements, from a cached plan.

    One attribute read per tensor for its spec and one for its local shard; the
    bucket assignment comes from the plan of the previous call with the same
    specs (a dict lookup and an identity comparison), so the per-step cost no
    longer includes resolving every parameter's layout.

    Args:
        tensors: a non-empty list of tensors.

    Returns:
        (buckets as :func:`_buckets` returns them, the local shard of every
        tensor in order), or None when some tensor is not a DTensor or has a
        ``Partial`` placement (use :func:`_buckets`).
    """
    if DTensor is None or not isinstance(tensors[0], DTensor):
        return None
    try:
        specs = [t._spec for t in tensors]
    except AttributeError:  # a plain tensor in the list
        return None
    key = (len(specs), id(specs[0]), id(specs[-1]))
    plan = _PLANS.get(key)
    if plan is None or not plan.valid_for(specs):
        if not all(isinstance(t, DTensor) for t in tensors):
            return None
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(specs)
    if plan.buckets is None:
        return None
    local = [t._local_tensor for t in tensors]
    if len(plan.buckets) == 1:
        mesh, dims, indices = plan.buckets[0]
        return [([mesh.get_group(d) for d in dims], indices, local)], local
    buckets = [
        ([mesh.get_group(d) for d in dims], indices, [local[i] for i in indices])
        for mesh, dims, indices in plan.buckets
    ]
    return buckets, local


# Device index tensors by (device, indices), the most recently used last.
INDEX_CACHE: dict[tuple, Tensor] = {}
INDEX_CACHE_SIZE = 64


def index_tensor(indices: Sequence[int], device: torch.device) -> Tensor:
    """A device index tensor of ``indices`` (a bucket's positions, the
    parameters of a GradMonitor step that have a grad), from a cache of the
    last INDEX_CACHE_SIZE: a list whose pattern changes every step (MoE
    experts, layer drop) would otherwise grow it without bound. A new index
    travels from pinned memory without blocking: a pageable host-to-device
    copy would stall the host on CUDA, every miss."""
    key = (device, tuple(indices))
    index = INDEX_CACHE.pop(key, None)
    if index is None:
        host = torch.tensor(key[1], dtype=torch.long)
        if device.type == "cuda":
            host = host.pin_memory()
        index = host.to(device, non_blocking=True)
    INDEX_CACHE[key] = index
    if len(INDEX_CACHE) > INDEX_CACHE_SIZE:
        del INDEX_CACHE[next(iter(INDEX_CACHE))]
    return index


def group_device(process_group: Any) -> torch.device:
    """The device a process group's collectives use (CPU for gloo, the current
    CUDA device for NCCL): for a rank that has no tensor to take it from."""
    from torch.distributed.distributed_c10d import _get_pg_default_device

    return _get_pg_default_device(process_group)


def _scaled_pnorm(values: Tensor, p: float, dim: int = 0) -> Tensor:
    """(sum |v|^p)^(1/p) along ``dim`` without overflow or underflow of the
    powers: m (sum (|v| / m)^p)^(1/p), m the largest |v|. NaN stays NaN."""
    values = values.abs()
    m = values.amax(dim=dim, keepdim=True)
    ratio = torch.where(m > 0, values / torch.where(m > 0, m, 1.0), 0.0)
    ratio = torch.where(torch.isinf(m), torch.isinf(values).to(values.dtype), ratio)
    out = m.squeeze(dim) * ratio.pow(p).sum(dim=dim).pow(1.0 / p)
    return torch.where(torch.isnan(values).any(dim=dim), math.nan, out)


def norms(
    tensors: list[Tensor],
    p: float,
    per_tensor: bool,
    process_group: Any,
    replicated: list[bool] | None,
    local_norms: Callable[[list[Tensor], float, bool], tuple[Tensor, Tensor | None]],
    buckets: list[Bucket] | None = None,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Global (total, per-tensor) norms of DTensor / process-group-sharded tensors.

    Args:
        tensors: gradients (DTensors or plain local shards); may be empty on a
            rank that holds none of a process group's tensors, which still
            joins the collectives (with ``buckets`` and ``device`` given).
        p: norm order, > 0 or inf.
        per_tensor: also return each tensor's global norm (one float64 per
            tensor all-reduced per bucket; every rank must pass the same
            number of tensors per bucket).
        process_group: the group plain, unmarked tensors are sharded over.
        replicated: per tensor, True if counted once (see mark_replicated);
            None if nothing is marked.
        local_norms: the single-process fused norm, (tensors, p, per_tensor)
            -> (total, per_tensor).
        buckets: ``tensors`` grouped already (from :func:`dtensor_buckets`);
            None to group them here.
        device: where the results go (default: the first local shard's device).

    Returns:
        (total, per_tensor or None) as plain tensors on the first local shard's
        device, identical on every rank: float64 if any tensor is float64, else
        float32. The dtype is decided from this rank's tensors (the others'
        would need a host sync): with a process group, a rank whose tensors
        are all float32 or lower (or that holds none) returns float32 while a
        rank holding a float64 one returns float64; the value is the same,
        rounded to float32 there.

    Orders 1 and 2 all-reduce the sums of ``norm ** p`` (float64 holds them
    for any fp32/fp16/bf16 norm); inf all-reduces the max; any other p takes
    one more collective, the max of every entry, and sums ``(norm / max) ** p``
    so that no power over- or underflows (p = 128 at norms of 1e3 gave inf).
    """
    is_inf = math.isinf(p)
    scaled = not is_inf and p not in (1.0, 2.0)
    op = dist.ReduceOp.MAX if is_inf else dist.ReduceOp.SUM
    if buckets is None:
        buckets = _buckets(tensors, replicated, process_group)
    if device is None:
        device = next(local[0].device for _, _, local in buckets if local)
    total_pow = torch.zeros((), dtype=torch.float64, device=device)
    bucket_norms: list[Tensor] = []  # scaled p: each bucket's global norm
    per = torch.zeros(len(tensors), dtype=torch.float64, device=device) if per_tensor else None
    # The fused op returns float64 exactly when one of its tensors is float64
    # (as do the fallbacks), so the result dtype comes from the bucket totals,
    # not from a dtype read per tensor (~0.2 us each on a DTensor).
    any_fp64 = False
    for groups, indices, local in buckets:
        if local:
            b_total, b_per = local_norms(local, p, per_tensor)
        else:  # nothing here, but the other ranks' collective needs this one
            b_total, b_per = torch.zeros((), device=device), torch.zeros(0, device=device)
        any_fp64 = any_fp64 or b_total.dtype == torch.float64
        # One tensor per bucket carries the total (and the per-tensor values)
        # through the collective: [total, per_0, per_1, ...].
        payload = b_total.to(device=device, dtype=torch.float64).reshape(1)
        if per_tensor:
            payload = torch.cat([payload, b_per.to(device=device, dtype=torch.float64)])
        if scaled:
            if groups:
                scale = payload.clone()
                for group in groups:
                    dist.all_reduce(scale, op=dist.ReduceOp.MAX, group=group)
                terms = torch.where(scale > 0, payload / torch.where(scale > 0, scale, 1.0), 0.0)
                # Where another rank's entry is inf, this rank's finite entry
                # counts 0 and its inf 1; its NaN stays NaN (MAX dropped it from scale).
                at_inf = torch.where(torch.isnan(payload), math.nan, torch.isinf(payload).to(torch.float64))
                terms = torch.where(torch.isinf(scale), at_inf, terms).pow(p)
                for group in groups:
                    dist.all_reduce(terms, op=dist.ReduceOp.SUM, group=group)
                payload = torch.where(torch.isnan(terms), math.nan, scale * terms.pow(1.0 / p))
            bucket_norms.append(payload[0])
            if per_tensor:
                per[index_tensor(indices, device)] = payload[1:]
            continue
        if not is_inf:
            payload = payload.pow(p)  # SUM keeps NaN and inf on its own
        elif groups:
            # MAX drops NaN (gloo, NCCL): carry a NaN flag per entry next to
            # the values, in the same collective.
            flags = payload.isnan().to(torch.float64)
            payload = torch.cat([payload.nan_to_num(nan=0.0), flags])
        for group in groups:
            dist.all_reduce(payload, op=op, group=group)
        if is_inf and groups:
            values, flags = payload.chunk(2)
            payload = torch.where(flags > 0, torch.full_like(values, math.nan), values)
        total_pow = torch.maximum(total_pow, payload[0]) if is_inf else total_pow + payload[0]
        if per_tensor:
            per[index_tensor(indices, device)] = payload[1:]
    if scaled:
        total = _scaled_pnorm(torch.stack(bucket_norms), p)
    else:
        total = total_pow if is_inf else total_pow.pow(1.0 / p)
    dtype = torch.float64 if any_fp64 else torch.float32
    if per_tensor:
        per = per if is_inf or scaled else per.pow(1.0 / p)
        per = per.to(dtype)
    return total.to(dtype), per
