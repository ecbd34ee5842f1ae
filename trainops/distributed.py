"""Global gradient norms of sharded models, through torch.distributed.

trainops builds on PyTorch's distributed engine (DTensor, FSDP2 ``fully_shard``,
tensor parallelism, process groups), never its own. The clipping functions
accept DTensor gradients and plain tensors sharded by hand (``process_group=``);
the fused kernels run on each rank's local shards and one all-reduce per
process group combines the partial results:

* the partial of a group is the sum of ``|x|^p`` over the rank's local shards,
  formed in float64 from the kernel's norm (``norm ** p``); it is all-reduced
  with SUM (MAX for ``inf``), and the global norm is ``total ** (1/p)``;
* a DTensor is sharded over the mesh dimensions whose placement is ``Shard``;
  replicated dimensions are counted once (no reduction over them); ``Partial``
  gradients are reduced to replicated first (one extra collective, rare);
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

float64 partial sums hold any fp32/fp16/bf16 norm for p <= 8; fp64 gradients
with norms above ~1e154 (p = 2) overflow the partial and give inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    Marking a parameter covers its ``.grad``.

    Args:
        tensors: parameters or plain tensors.
    """
    global _ANY_MARKED
    _ANY_MARKED = True
    for t in tensors:
        setattr(t, _REPLICATED_ATTR, True)


def is_replicated(t: Tensor) -> bool:
    return bool(getattr(t, _REPLICATED_ATTR, False))


def _unpartial(t: Tensor) -> Tensor:
    placements = [Replicate() if isinstance(pl, Partial) else pl for pl in t.placements]
    return t.redistribute(t.device_mesh, placements)


def local_tensors(tensors: list[Tensor]) -> list[Tensor]:
    """The local shards of DTensors (views sharing storage), plain tensors as they are."""
    if not has_dtensor(tensors):
        return tensors
    return [t._local_tensor if is_dtensor(t) else t for t in tensors]


def _buckets(
    tensors: list[Tensor], flags: list[bool] | None, process_group: Any
) -> dict[tuple, tuple[list[Any], list[int], list[Tensor]]]:
    """Group tensors by the collectives they need: key -> (groups, indices, local tensors).

    A DTensor's bucket depends only on its (mesh, placements): it is resolved
    once per distinct pair (a model has a handful), not once per parameter.
    """
    buckets: dict[tuple, tuple[list[Any], list[int], list[Tensor]]] = {}
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
                    dims = tuple(d for d, pl in enumerate(spec.placements) if pl.is_shard())
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
    return buckets


_INDEX_CACHE: dict[tuple, Tensor] = {}


def _index_tensor(indices: list[int], device: torch.device) -> Tensor:
    """Device index tensor of a bucket, built once: a host-to-device copy every
    step would stall the host on CUDA."""
    key = (device, tuple(indices))
    index = _INDEX_CACHE.get(key)
    if index is None:
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        index = _INDEX_CACHE[key] = torch.tensor(indices, device=device)
    return index


def _result_dtype(tensors: list[Tensor]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def norms(
    tensors: list[Tensor],
    p: float,
    per_tensor: bool,
    process_group: Any,
    replicated: list[bool] | None,
    local_norms: Callable[[list[Tensor], float, bool], tuple[Tensor, Tensor | None]],
) -> tuple[Tensor, Tensor | None]:
    """Global (total, per-tensor) norms of DTensor / process-group-sharded tensors.

    Args:
        tensors: gradients (DTensors or plain local shards).
        p: norm order, > 0 or inf.
        per_tensor: also return each tensor's global norm (one float64 per
            tensor all-reduced per bucket).
        process_group: the group plain, unmarked tensors are sharded over.
        replicated: per tensor, True if counted once (see mark_replicated);
            None if nothing is marked.
        local_norms: the single-process fused norm, (tensors, p, per_tensor)
            -> (total, per_tensor).

    Returns:
        (total, per_tensor or None) as plain tensors on the first local shard's
        device, identical on every rank.
    """
    is_inf = math.isinf(p)
    op = dist.ReduceOp.MAX if is_inf else dist.ReduceOp.SUM
    buckets = _buckets(tensors, replicated, process_group)
    device = next(iter(buckets.values()))[2][0].device
    total_pow = torch.zeros((), dtype=torch.float64, device=device)
    per = torch.zeros(len(tensors), dtype=torch.float64, device=device) if per_tensor else None
    for groups, indices, local in buckets.values():
        b_total, b_per = local_norms(local, p, per_tensor)
        # One tensor per bucket carries the total (and the per-tensor values)
        # through the collective: [total, per_0, per_1, ...].
        payload = b_total.to(device=device, dtype=torch.float64).reshape(1)
        if per_tensor:
            payload = torch.cat([payload, b_per.to(device=device, dtype=torch.float64)])
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
            per[_index_tensor(indices, device)] = payload[1:]
    total = total_pow if is_inf else total_pow.pow(1.0 / p)
    dtype = _result_dtype(tensors)
    if per_tensor:
        per = per if is_inf else per.pow(1.0 / p)
        per = per.to(dtype)
    return total.to(dtype), per
