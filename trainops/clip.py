"""Gradient norms and clipping: drop-in replacements for ``torch.nn.utils``.

``clip_grad_norm_``, ``get_total_norm``, ``clip_grads_with_norm_`` and
``clip_grad_value_`` take the arguments of their torch.nn.utils namesakes
(torch >= 2.6) and keep their semantics, with these deliberate differences:

* The norm is computed by one fused multi-tensor pass per device (one read of
  every gradient), accurate to better than 1e-6 relative (typically ~1e-7)
  for fp32 gradients of any size
  and free of spurious overflow/underflow; torch's CPU norm is off by 1e-3..1e-2
  on 1e8-element tensors.
* The total norm of fp16/bf16 gradients is returned in float32 (torch returns
  fp16, which overflows to inf above 65504, or bf16, rounded to 8 bits). It is float64 if any gradient
  is float64, else float32.
* An empty tensor in the list is fine for every norm type (torch raises for
  norm_type=inf).
* When no clipping is needed (coefficient exactly 1) no gradient is written.
* Invalid arguments raise ``TypeError`` / ``ValueError`` before any gradient is
  touched: a negative or NaN ``max_norm`` / ``clip_value``, ``norm_type <= 0``
  or NaN (only p > 0 and inf are supported), integer or complex tensors, sparse
  gradients, meta tensors, and (in the in-place functions) expanded
  gradients, whose elements share memory through a stride of 0 (torch raises
  ``RuntimeError`` there, after scaling the gradients before it in the list).
  Other self-overlapping views (``unfold`` with a step below the size) are
  not detected: each memory location is then written once (torch scales it
  once per view element that maps to it).
* ``clip_grads_with_norm_`` computes the coefficient in float32 (float64 for a
  float64 ``total_norm``): an fp16/bf16 ``total_norm`` is converted first, where
  torch computes the coefficient in fp16/bf16. ``total_norm`` may also be a
  Python number or a one-element tensor; a complex one raises ``TypeError``.
* ``clip_grad_value_`` accepts a ``clip_value`` beyond a gradient dtype's range
  (it then clamps nothing of that dtype; torch raises for fp16 above 65504), and
  does nothing when no parameter has a gradient (torch raises).
* In-place writes bump the gradients' autograd version counters, as torch's
  ops do (after the write: a call that raises bumps nothing), but an
  inference-mode gradient is written without torch's error.
* ``foreach`` is accepted for compatibility; the fused kernel is always used,
  except under ``torch.func`` transforms (``functionalize``, ``vmap``,
  ``grad``), which have no rule for the fused ops: there torch's ops run (as
  on a device without a kernel, without the warning).
* The in-place functions expect every gradient once, as ``module.parameters()``
  yields them: a tensor listed twice in one call (or views that overlap) is
  written by parallel tasks at once, so its result is unspecified (torch
  scales it twice).

* ``max_norm`` / ``clip_value`` may be a one-element tensor, as in torch (e.g.
  a clip schedule kept on the device). A CPU tensor outside ``torch.compile``
  is read and checked like a number. On an accelerator or under
  ``torch.compile`` it stays a tensor: it is not checked (that would sync or
  guard on data), and it is applied with torch ops as torch.nn.utils applies it,
  so the scale then writes every gradient even when the coefficient is 1. Under
  ``torch.compile`` a Python float threshold is a constant of the graph: a value
  that changes every step recompiles, so pass a schedule as a tensor.

None of these functions synchronises with the device, except
``error_if_nonfinite=True``, which must read the norm on the host to raise.
Devices without a trainops kernel fall back to the operations torch.nn.utils uses
(per-tensor vector_norm, mul_, clamp_), with a single
warning.
"""

from __future__ import annotations

import numbers
import types
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Union

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor

from . import _extension, distributed

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "grad_norms",
]

TensorOrTensors = Union[Tensor, Iterable[Tensor]]

_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_list(tensors: TensorOrTensors) -> list[Tensor]:
    if isinstance(tensors, Tensor):
        return [tensors]
    return list(tensors)


def _grads_of(parameters: list[Tensor]) -> list[Tensor]:
    # One .grad read per parameter: at 10,000 parameters each read costs as much
    # as the whole kernel pass.
    if _torch_function_is_noop(parameters):
        with torch._C.DisableTorchFunctionSubclass():
            return _read_grads(parameters)
    return _read_grads(parameters)


def _read_grads(parameters: list[Tensor]) -> list[Tensor]:
    grads = []
    for p in parameters:
        g = p.grad
        if g is not None:
            grads.append(g)
    return grads


_NO_TORCH_FUNCTION = getattr(torch._C, "_disabled_torch_function_impl", None)


def _torch_function_is_noop(parameters: list[Tensor]) -> bool:
    """True for DTensor parameters (FSDP2, TP) whose ``.grad`` reads may skip
    ``__torch_function__``: then they cost half (0.11 instead of 0.23 us).

    A DTensor's ``.grad`` getter first looks up ``__torch_function__`` on its
    class. DTensor's is torch's ``_disabled_torch_function_impl``, which only
    runs the getter with subclass handling disabled, so disabling it around
    the loop gives the same tensors. That holds for any class with that
    implementation (``nn.Parameter`` too) and for ``torch.Tensor`` itself; a
    class with its own ``__torch_function__`` in the list keeps the plain
    reads. Plain parameters skip the check (their reads are fast already).
    """
    if distributed.DTensor is None or not parameters or not isinstance(parameters[0], distributed.DTensor):
        return False
    if torch.compiler.is_compiling():
        return False
    return all(
        t is Tensor or getattr(t, "__torch_function__", None) is _NO_TORCH_FUNCTION for t in set(map(type, parameters))
    )


def _check_norm_type(norm_type: float) -> float:
    p = float(norm_type)
    if not p > 0.0:  # also rejects NaN
        raise ValueError(f"norm_type must be > 0 or inf (p-norms with p > 0 are supported), got {norm_type}")
    return p


def _check_nonnegative(value: float, name: str) -> float:
    v = float(value)
    if not v >= 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return v


def _threshold(value: float | Tensor, name: str) -> float | Tensor:
    """max_norm / clip_value as the clip functions take it: a checked float,
    or a one-element real tensor kept as a tensor where reading it would sync
    with an accelerator or guard on data under torch.compile. A tensor kept so
    is not checked for sign or NaN (that needs its value on the host) and is
    applied with torch ops, as torch.nn.utils does (the scale then always
    writes)."""
    if not isinstance(value, Tensor):
        return _check_nonnegative(value, name)
    if value.numel() != 1 or value.is_complex():
        raise ValueError(
            f"{name} must be a number or a one-element real tensor, "
            f"got a {value.dtype} tensor of shape {tuple(value.shape)}"
        )
    if torch.compiler.is_compiling() or value.device.type != "cpu":
        value = value.reshape(())
        # bool / integer: as a float, as float(value) would read it (-True is an error)
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    return _check_nonnegative(value, name)


def _has_internal_overlap(t: Tensor) -> bool:
    """Some elements share memory (a dimension of size > 1 with stride 0)."""
    return not t.is_contiguous() and any(n > 1 and s == 0 for n, s in zip(t.shape, t.stride()))


def _check_tensors(tensors: list[Tensor], what: str = "gradient", writable: bool = False) -> None:
    """The ops' checks, with Python's exception types (TypeError / ValueError):
    run on the error path of the fast path, since the stable-ABI ops raise only
    RuntimeError, and before any write on the multi-device path."""
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what} {i} is a {type(t).__name__}, not a torch.Tensor")
        if t.layout != torch.strided:
            raise TypeError(
                f"{what} {i} has layout {t.layout}; trainops supports dense (strided) tensors only, "
                "not sparse ones (convert with .to_dense() or use torch.nn.utils)"
            )
        if t.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(
                f"{what} {i} has dtype {t.dtype}; only float16, bfloat16, float32 and float64 are supported"
            )
        if t.device.type == "meta":
            raise ValueError(f"{what} {i} is a meta tensor: it holds no data, so there is nothing to clip")
        if writable and _has_internal_overlap(t):
            raise ValueError(
                f"{what} {i} has elements that share memory (e.g. an expanded view) and cannot be modified in place"
            )


def _group_by_device(tensors: list[Tensor]) -> dict[torch.device, list[Tensor]]:
    groups: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.device, []).append(t)
    return groups


def _wrapped_by_torch_func(t: Tensor) -> bool:
    """Wrapped by a torch.func transform (``functionalize``, ``vmap``,
    ``grad``). Never under torch.compile, which traces the fused ops itself
    (and cannot trace this check)."""
    return not torch.compiler.is_compiling() and is_functorch_wrapped_tensor(t)


def _has_kernel(group: list[Tensor]) -> bool:
    """A trainops kernel serves this one-device group. Not on a device
    without one (said once, with a warning), nor for tensors wrapped by
    torch.func (``functionalize``, ``vmap``, ``grad``), which have no rule for
    the fused ops (functionalization of an op that mutates a list, a batching
    rule): torch's ops run for those, as torch.nn.utils runs them."""
    if _wrapped_by_torch_func(group[0]):
        return False
    device = group[0].device
    if device.type in _extension.CLIP_DEVICES:
        return True
    _extension.warn_fallback("trainops", device.type, "falling back to torch.nn.utils for them (slower)")
    return False


def _fallback_norms(tensors: list[Tensor], p: float) -> Tensor:
    # torch ops, with trainops' dtype rule (fp32 for fp16/bf16) and empty tensors
    # allowed for every norm type (torch's inf-norm raises on them).
    return torch.stack(
        [
            torch.linalg.vector_norm(t.float() if t.dtype != torch.float64 else t, p)
            if t.numel()
            else torch.zeros((), dtype=torch.float64 if t.dtype == torch.float64 else torch.float32, device=t.device)
            for t in tensors
        ]
    )


def _spans_devices(tensors: list[Tensor]) -> bool:
    first = tensors[0].device
    return any(t.device != first for t in tensors)


def _fast_path(tensors: list[Tensor]) -> bool:
    """True when one fused op call can take the whole list.

    Per-tensor checks cost ~0.3 us each in Python, as much as the kernel on a
    list of 10,000 small grads, so the common case (one device with a kernel)
    leaves validation to the op, which checks the whole list before touching
    any data. Only the first tensor is inspected here: a meta tensor would be
    dispatched to the shape-only fake kernel instead of raising.
    """
    first = tensors[0]
    if not isinstance(first, Tensor) or distributed.is_dtensor(first):
        return False  # DTensor dispatch of an unknown op is slow: go to the local shards directly
    if _wrapped_by_torch_func(first):
        return False  # torch's ops (see _has_kernel)
    if first.is_meta:
        raise ValueError("tensor 0 is a meta tensor: it holds no data, so there is nothing to clip")
    return first.device.type in _extension.CLIP_DEVICES


def _device_norm(tensors: list[Tensor], p: float, per_tensor: bool) -> tuple[Tensor, Tensor]:
    """(total, per-tensor) norm of validated tensors on one device."""
    if _has_kernel(tensors):
        return torch.ops.trainops.multi_tensor_norm(tensors, p, per_tensor)
    per = _fallback_norms(tensors, p)
    return torch.linalg.vector_norm(per, p), per


_OP_ERRORS = (ValueError, NotImplementedError, RuntimeError)


def _norms(
    tensors: list[Tensor],
    p: float,
    per_tensor: bool,
    process_group: Any = None,
    owners: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(total, per-tensor or None) of a non-empty list; global over ranks for
    DTensors or a process group (trainops.distributed)."""
    total, per, _ = _norms_and_shards(tensors, p, per_tensor, process_group, owners)
    return total, per


def _norms_and_shards(
    tensors: list[Tensor],
    p: float,
    per_tensor: bool,
    process_group: Any = None,
    owners: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor | None, list[Tensor] | None]:
    """:func:`_norms`, plus the local shards of ``tensors`` in order (sharing
    their storage) when all are DTensors without Partial placements, else None:
    clipping scales those without walking the DTensors a second time."""
    if process_group is None and _fast_path(tensors):
        try:
            return (*torch.ops.trainops.multi_tensor_norm(tensors, p, per_tensor), None)
        except _OP_ERRORS:
            if not distributed.has_dtensor(tensors):
                _check_tensors(tensors)  # raises the precise error (sparse, meta, ...)
                if not _spans_devices(tensors):
                    raise
                return (*_grouped_norms(tensors, p, per_tensor), None)  # not offered to the op again
    # FSDP2 / TP: bucketed by a cached plan; marks only apply to plain tensors. With a
    # process group the general path below adds the group's bucket, which this
    # rank must join even when it holds only DTensors.
    split = distributed.dtensor_buckets(tensors) if process_group is None else None
    if split is not None:
        buckets, shards = split
        return (*distributed.norms(tensors, p, per_tensor, process_group, None, _local_norms, buckets), shards)
    if process_group is not None or distributed.has_dtensor(tensors):
        # Parameters (owners) or the tensors themselves may be marked replicated.
        flags = None
        if distributed.any_marked():
            flags = _replicated_flags(owners) if owners is not None else [distributed.is_replicated(t) for t in tensors]
        return (*distributed.norms(tensors, p, per_tensor, process_group, flags, _local_norms), None)
    return (*_local_norms(tensors, p, per_tensor), None)


def _local_norms(tensors: list[Tensor], p: float, per_tensor: bool) -> tuple[Tensor, Tensor | None]:
    """(total, per-tensor or None) of a non-empty list of local tensors, on the first one's device."""
    if _fast_path(tensors):
        try:
            return torch.ops.trainops.multi_tensor_norm(tensors, p, per_tensor)
        except _OP_ERRORS:
            _check_tensors(tensors)  # raises the precise error (sparse, meta, ...)
            if not _spans_devices(tensors):
                raise
    else:
        _check_tensors(tensors)
    return _grouped_norms(tensors, p, per_tensor)


def _grouped_norms(tensors: list[Tensor], p: float, per_tensor: bool) -> tuple[Tensor, Tensor | None]:
    """:func:`_local_norms` of a checked list: one call per device group."""
    first_device = tensors[0].device
    groups = _group_by_device(tensors)
    if len(groups) == 1:
        return _device_norm(tensors, p, per_tensor)
    # Several devices: the p-norm of the per-device norms is the global norm.
    results = {dev: _device_norm(group, p, per_tensor) for dev, group in groups.items()}
    partials = torch.stack([total.to(first_device) for total, _ in results.values()])
    total, _ = _device_norm([partials], p, False)
    if not per_tensor:
        return total, None
    per = torch.empty(len(tensors), dtype=total.dtype, device=first_device)
    position = {dev: 0 for dev in groups}
    for i, t in enumerate(tensors):
        per[i] = results[t.device][1][position[t.device]]
        position[t.device] += 1
    return total, per


def _local_shards(tensors: list[Tensor], linear: bool) -> list[Tensor]:
    """The local shards of DTensors, for an in-place op. A non-linear op
    (clamp) refuses a ``Partial`` placement: each rank holds an unreduced
    partial sum, and clamping the partials does not clamp their sum."""
    if not linear:
        for i, t in enumerate(tensors):
            if distributed.has_partial(t):
                raise ValueError(
                    f"gradient {i} is a DTensor with a Partial placement (each rank holds an unreduced partial "
                    "sum), and clamping the partials would not clamp their sum; reduce it first, e.g. "
                    "grad.redistribute(grad.device_mesh, [Replicate()]) for those mesh dimensions"
                )
    return distributed.local_tensors(tensors)


def _apply_in_place(
    tensors: list[Tensor],
    op: Callable[[list[Tensor]], None] | None,
    fallback: Callable[[list[Tensor]], None],
    linear: bool = True,
) -> None:
    """Run an in-place op over the list: one fused call per device (DTensors:
    on their local shards, which share storage with them). ``linear``: the op
    commutes with summing partials (scaling does, clamping does not). ``op``
    None: torch ops (``fallback``) on every device, after the same checks."""
    if not tensors:
        return
    _write_in_place(tensors, op, fallback, linear)
    # After the write (a refused call bumps nothing), on the tensors the caller
    # sees (DTensors, not their shards).
    _extension.mark_written(tensors)


def _write_in_place(
    tensors: list[Tensor],
    op: Callable[[list[Tensor]], None] | None,
    fallback: Callable[[list[Tensor]], None],
    linear: bool,
) -> None:
    """:func:`_apply_in_place` without the version bump."""
    if distributed.is_dtensor(tensors[0]):
        tensors = _local_shards(tensors, linear)
    if op is None:
        if distributed.has_dtensor(tensors):  # DTensors behind a plain first tensor
            tensors = _local_shards(tensors, linear)
        _check_tensors(tensors, writable=True)  # every tensor validated before any is written
        for group in _group_by_device(tensors).values():
            fallback(group)
        return
    if _fast_path(tensors):
        try:
            op(tensors)
            return
        except _OP_ERRORS:
            if distributed.has_dtensor(tensors):  # DTensors behind a plain first tensor
                tensors = _local_shards(tensors, linear)
            else:
                _check_tensors(tensors, writable=True)  # raises the precise error (sparse, meta, ...)
                if not _spans_devices(tensors):
                    raise
        if _fast_path(tensors) and not _spans_devices(tensors):
            op(tensors)
            return
    _check_tensors(tensors, writable=True)  # every device group validated before any is written
    for group in _group_by_device(tensors).values():
        (op if _has_kernel(group) else fallback)(group)


def _scale_by_norm(grads: list[Tensor], max_norm: float | Tensor, total_norm: Tensor | float) -> None:
    if isinstance(total_norm, Tensor):
        if total_norm.is_complex():
            raise TypeError(f"total_norm must be real, got a {total_norm.dtype} tensor")
        if distributed.is_dtensor(total_norm):  # e.g. from torch.nn.utils.get_total_norm
            total_norm = total_norm.full_tensor()
        if total_norm.dtype not in (torch.float32, torch.float64):
            total_norm = total_norm.float()
    elif not isinstance(total_norm, numbers.Real):
        raise TypeError(f"total_norm must be a tensor or a real number, got {type(total_norm).__name__}")
    totals: dict[torch.device, Tensor] = {}

    def on(device: torch.device) -> Tensor:
        if device not in totals:
            if isinstance(total_norm, Tensor):
                totals[device] = total_norm.to(device)
            else:  # filled on the device: a host-to-device copy of a pageable scalar would sync
                dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                totals[device] = torch.full((), float(total_norm), dtype=dtype, device=device)
        return totals[device]

    def op(group: list[Tensor]) -> None:
        torch.ops.trainops.multi_tensor_clip_scale_(group, on(group[0].device), max_norm)

    def fallback(group: list[Tensor]) -> None:
        device = group[0].device
        limit = max_norm.to(device) if isinstance(max_norm, Tensor) else max_norm
        coef = torch.clamp(limit / (on(device) + 1e-6), max=1.0)
        for g in group:
            g.mul_(coef)

    _apply_in_place(grads, None if isinstance(max_norm, Tensor) else op, fallback)


def _total_norm(
    tensors: list[Tensor],
    p: float,
    error_if_nonfinite: bool,
    process_group: Any = None,
    owners: list[Tensor] | None = None,
) -> tuple[Tensor, list[Tensor] | None]:
    """(total norm, the local shards of DTensor ``tensors`` or None; see _norms_and_shards)."""
    if len(tensors) == 0 and process_group is None:
        return torch.tensor(0.0), None
    if len(tensors) == 0:  # no gradient here, but the group's all-reduce needs this rank
        device = owners[0].device if owners else distributed.group_device(process_group)
        total, _ = distributed.norms([], p, False, process_group, None, _local_norms, device=device)
        shards = None
    else:
        total, _, shards = _norms_and_shards(tensors, p, False, process_group, owners)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    return total, shards


@torch.no_grad()
def get_total_norm(
    tensors: TensorOrTensors,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    process_group: Any = None,
) -> Tensor:
    """Norm of a list of tensors, as if they were concatenated into one vector.

    Args:
        tensors: a tensor or an iterable of tensors (typically gradients),
            plain or DTensor (then the norm is global over the ranks).
        norm_type: the order p of the norm, any p > 0 or ``inf``.
        error_if_nonfinite: raise ``RuntimeError`` if the norm is nan or inf
            (this reads the norm on the host: one device sync).
        foreach: accepted for compatibility with torch.nn.utils; ignored.
        process_group: for plain tensors sharded by hand: the group they are
            sharded over; the partial norms are all-reduced over it (tensors
            marked with :func:`trainops.distributed.mark_replicated` are counted
            once). DTensors need no argument. See trainops.distributed.

    Returns:
        A plain 0-dim tensor on the first tensor's (local) device: float64 if
        any tensor is float64, else float32. ``tensor(0.)`` for an empty input.
    """
    del foreach
    tensors = _as_list(tensors)
    p = _check_norm_type(norm_type)
    return _total_norm(tensors, p, error_if_nonfinite, process_group)[0]


@torch.no_grad()
def clip_grads_with_norm_(
    parameters: TensorOrTensors,
    max_norm: float | Tensor,
    total_norm: Tensor,
    foreach: bool | None = None,
) -> None:
    """Scale gradients in place by ``min(max_norm / (total_norm + 1e-6), 1)``.

    The coefficient is computed on the device from the ``total_norm`` tensor (no
    host sync); when it is exactly 1, no gradient is written.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is scaled.
        max_norm: the maximum norm, >= 0: a number or a one-element tensor
            (see the module docstring).
        total_norm: the norm to scale by, e.g. from :func:`get_total_norm`.
        foreach: accepted for compatibility with torch.nn.utils; ignored.
    """
    del foreach
    parameters = _as_list(parameters)
    max_norm = _threshold(max_norm, "max_norm")
    _scale_by_norm(_grads_of(parameters), max_norm, total_norm)


@torch.no_grad()
def clip_grad_norm_(
    parameters: TensorOrTensors,
    max_norm: float | Tensor,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    process_group: Any = None,
) -> Tensor:
    """Clip the global gradient norm of ``parameters`` to ``max_norm`` in place.

    Equivalent to :func:`get_total_norm` over the gradients followed by
    :func:`clip_grads_with_norm_`: one read of every gradient when no clipping is
    needed, plus one read-write pass when it is. Parameters whose ``.grad`` is
    None are skipped.

    Args:
        parameters: a tensor or an iterable of tensors (a generator is fine).
        max_norm: the maximum norm, >= 0: a number or a one-element tensor
            (see the module docstring).
        norm_type: the order p of the norm, any p > 0 or ``inf``.
        error_if_nonfinite: raise ``RuntimeError`` (leaving every gradient
            untouched) if the norm is nan or inf; this syncs with the device.
        foreach: accepted for compatibility with torch.nn.utils; ignored.
        process_group: for plain tensors sharded by hand: the group they are
            sharded over; the partial norms are all-reduced over it (tensors
            marked with :func:`trainops.distributed.mark_replicated` are counted
            once). DTensors need no argument. See trainops.distributed.

    Returns:
        The total norm of the gradients before clipping (see
        :func:`get_total_norm` for its dtype).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        is_generator = isinstance(parameters, types.GeneratorType)
        parameters = list(parameters)
        if is_generator and len(parameters) == 0:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3)
    max_norm = _threshold(max_norm, "max_norm")
    p = _check_norm_type(norm_type)
    grads = _grads_of(parameters)
    fused = not isinstance(max_norm, Tensor) and not error_if_nonfinite and process_group is None
    if grads and fused and _fast_path(grads):
        try:  # one fused call: norm, then scale by the device-side coefficient
            total = torch.ops.trainops.multi_tensor_clip_grad_norm_(grads, max_norm, p)
        except _OP_ERRORS:
            pass  # DTensors, several devices, bad input: the general path sorts it out
        else:
            _extension.mark_written(grads)  # after the op: a refused call bumps nothing
            return total
    total_norm, shards = _total_norm(grads, p, error_if_nonfinite, process_group, parameters)
    _scale_by_norm(grads if shards is None else shards, max_norm, total_norm)
    return total_norm


@torch.no_grad()
def clip_grad_value_(
    parameters: TensorOrTensors,
    clip_value: float | Tensor,
    foreach: bool | None = None,
) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    NaN stays NaN (as with torch.clamp). Blocks of a dense gradient that are
    already inside the range are not written (a strided view that is not dense
    goes through a contiguous copy, copied back whole).

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clamped.
        clip_value: the bound, >= 0: a number or a one-element tensor (see
            the module docstring).
        foreach: accepted for compatibility with torch.nn.utils; ignored.
    """
    del foreach
    parameters = _as_list(parameters)
    clip_value = _threshold(clip_value, "clip_value")
    grads = _grads_of(parameters)

    def fallback(group: list[Tensor]) -> None:
        bound = clip_value.to(group[0].device) if isinstance(clip_value, Tensor) else clip_value
        for g in group:
            # A bound beyond the dtype's range clamps nothing of it, as the
            # kernels do (torch's clamp_ would raise, after the earlier writes).
            if isinstance(bound, Tensor) or bound <= torch.finfo(g.dtype).max:
                g.clamp_(min=-bound, max=bound)

    def op(group: list[Tensor]) -> None:
        torch.ops.trainops.multi_tensor_clamp_(group, clip_value)

    _apply_in_place(grads, None if isinstance(clip_value, Tensor) else op, fallback, linear=False)


@torch.no_grad()
def grad_norms(parameters: TensorOrTensors, norm_type: float = 2.0, *, process_group: Any = None) -> Tensor:
    """Per-parameter gradient norms, from one fused pass.

    Args:
        parameters: a tensor or an iterable of tensors; those whose ``.grad`` is
            None are skipped.
        norm_type: the order p of the norm, any p > 0 or ``inf``.
        process_group: for plain tensors sharded by hand: the group they are
            sharded over; the partial norms are all-reduced over it (tensors
            marked with :func:`trainops.distributed.mark_replicated` are counted
            once). DTensors need no argument. See trainops.distributed.

    Returns:
        A float32 tensor with one norm per parameter that has a gradient, in
        order, on the first gradient's device (empty if there is none).
    """
    parameters = _as_list(parameters)
    p = _check_norm_type(norm_type)
    grads = _grads_of(parameters)
    if len(grads) == 0:
        return torch.zeros(0, dtype=torch.float32)
    return _norms(grads, p, True, process_group, parameters)[1].to(torch.float32)


def _replicated_flags(parameters: list[Tensor]) -> list[bool]:
    """Per parameter with a grad: counted once across the group?"""
    flags = []
    for p in parameters:
        g = p.grad
        if g is not None:
            flags.append(distributed.is_replicated(p) or distributed.is_replicated(g))
    return flags
