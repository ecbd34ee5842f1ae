"""Loading of the compiled extension (trainops._C) and what it provides.

Two builds exist (setup.py, TRAINOPS_ABI): the stable-ABI binary loads under
every torch from its ``min_torch`` (2.10) on, whatever torch it was built
against; the aten binary loads only under the exact torch it was built against.

Policy when the extension is missing or cannot run under this torch:
``import trainops`` still works and warns once, with the reason and the command
that rebuilds it; every op then runs on the pure-PyTorch fallback
(``torch.nn.utils`` for clipping), which is correct but slower. Set
``TRAINOPS_REQUIRE_EXTENSION=1`` to make the import fail instead (CI does, so
that it never tests the fallback by accident). ``trainops info`` shows which
case applies.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings

import torch

REBUILD_HINT = "rebuild it with `pip install --no-build-isolation -e .` (or `make build`) in the trainops checkout"

_HERE = os.path.dirname(os.path.abspath(__file__))


def _running_torch() -> str:
    return torch.__version__.split("+")[0]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


def _incompatibility(meta: dict) -> str | None:
    """Why the binary described by `meta` cannot load under this torch, or None."""
    built_cuda = meta.get("cuda")
    if built_cuda:
        # A CUDA build links the CUDA runtime of its torch: it needs a torch of
        # the same CUDA major version (a +cu130 wheel under a CPU or cu12 torch
        # would fail to load with a bare dlopen error).
        running_cuda = torch.version.cuda
        if running_cuda is None or running_cuda.split(".")[0] != str(built_cuda).split(".")[0]:
            return (
                f"trainops._C was built with CUDA {built_cuda} but torch {torch.__version__} "
                f"has {'no CUDA' if running_cuda is None else 'CUDA ' + running_cuda}; install the matching "
                "trainops variant (+cpu or +cuXYZ)"
            )
    if meta.get("abi") == "stable":
        min_torch = meta.get("min_torch", "2.10")
        if _version_tuple(_running_torch()) < _version_tuple(min_torch):
            return f"trainops._C (stable ABI) needs torch >= {min_torch} but torch {_running_torch()} is running"
        return None
    if meta.get("torch") != _running_torch():
        return f"trainops._C was built against torch {meta.get('torch')} but torch {_running_torch()} is running"
    return None


def _read_build_meta() -> dict | None:
    try:
        with open(os.path.join(_HERE, "_build_meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _load() -> tuple[bool, str | None, dict | None]:
    meta = _read_build_meta()
    if meta is None:
        if any(name.startswith("_C") and name.endswith(".so") for name in os.listdir(_HERE)):
            return False, "trainops._C is there but its build record trainops/_build_meta.json is missing", None
        return False, "the compiled extension trainops._C is not built", None
    reason = _incompatibility(meta)
    if reason is not None:
        return False, reason, meta
    try:
        importlib.import_module("trainops._C")
    except ImportError as exc:  # missing file, undefined symbol, ...
        return False, f"trainops._C could not be loaded ({exc})", meta
    return True, None, meta


LOADED, LOAD_ERROR, BUILD_META = _load()

if not LOADED:
    _msg = f"trainops: {LOAD_ERROR}; {REBUILD_HINT}."
    if os.environ.get("TRAINOPS_REQUIRE_EXTENSION", "0") == "1":
        raise ImportError(_msg)
    warnings.warn(
        _msg + " Falling back to pure PyTorch: clipping is correct but slower; trainops.init draws with torch's "
        "generator (same distributions, other values than the counter-based kernels).",
        RuntimeWarning,
        stacklevel=2,
    )


if LOADED:
    from . import _fake

    _fake.register()

_ISA_CAP = os.environ.get("TRAINOPS_CPU_ISA")
if _ISA_CAP is not None and _ISA_CAP not in ("baseline", "avx2", "avx512"):
    warnings.warn(
        f"TRAINOPS_CPU_ISA={_ISA_CAP!r} is not one of baseline, avx2, avx512 (lower case); it is ignored",
        RuntimeWarning,
        stacklevel=2,
    )


def _devices_with_kernel(op: str) -> frozenset[str]:
    if not LOADED:
        return frozenset()
    keys = {"cpu": "CPU", "cuda": "CUDA"}
    return frozenset(
        dev for dev, key in keys.items() if torch._C._dispatch_has_kernel_for_dispatch_key(f"trainops::{op}", key)
    )


# Device types with a compiled kernel for the clipping ops, fixed at import so
# that torch.compile sees a constant.
CLIP_DEVICES: frozenset[str] = _devices_with_kernel("multi_tensor_norm")


_warned_devices: set[tuple[str, str]] = set()


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside trainops (and torch's
    decorator wrappers), for a warning about the caller's call."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_HERE) or frame.f_code.co_filename.endswith("_contextlib.py")
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_fallback(feature: str, device_type: str, consequence: str) -> None:
    """Warn once per (feature, device type) that ``device_type`` tensors take
    the pure-PyTorch fallback. Nothing when the extension is not loaded at all:
    the import warned already, once for everything."""
    if not LOADED or (feature, device_type) in _warned_devices:
        return
    _warned_devices.add((feature, device_type))
    warnings.warn(
        f"{feature}: the trainops extension has no kernel for {device_type} tensors; {consequence}",
        RuntimeWarning,
        stacklevel=_user_stacklevel(),
    )


def build_info() -> dict[str, str]:
    """Facts compiled into the loaded binary (empty if it is not loaded)."""
    if not LOADED:
        return {}
    raw = torch.ops.trainops.build_info()
    return dict(item.split("=", 1) for item in raw.split(";") if "=" in item)


def mark_written(tensors: list[torch.Tensor]) -> None:
    """Bump the autograd version counters of tensors an op of ours writes in place.

    torch's own in-place ops do it in their ADInplaceOrView kernel; the compiled
    ops here cannot (the stable ABI has no such kernel), so the Python API calls
    this around each call of an op that writes (the clip functions after the
    write, so that a refused call bumps nothing). Without it, a graph that saved
    one of these tensors, or a tensor sharing its version counter (``.detach()``,
    views), would silently use the new values at backward instead of raising
    "modified by an inplace operation". ~50 ns per tensor. Skipped while
    torch.compile traces: functionalization accounts for the mutation there.
    Inference tensors have no counter and are written without torch's error.
    """
    if not tensors or torch.compiler.is_compiling():
        return
    try:
        torch._C._increment_version(tensors)
    except TypeError:  # a torch whose _increment_version takes one tensor
        for t in tensors:
            torch._C._increment_version(t)
