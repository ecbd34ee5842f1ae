"""Pure-PyTorch float64 reference of the trainops clipping ops: the test oracle.

Each function computes what the corresponding ``torch.ops.trainops`` op must
return, in float64 with the scaling that keeps p-th powers from overflowing,
then rounds once to the op's result dtype. Slow and allocation-heavy by design:
it is the definition, not an implementation to use in a training loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["clip_scale_", "clamp_", "norm_result_dtype", "tensor_norm64", "total_norm", "per_tensor_norms"]


def norm_result_dtype(tensors: list[Tensor]) -> torch.dtype:
    """fp64 if any tensor is fp64, else fp32 (fp16/bf16 norms are returned in fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _pnorm64(x: Tensor, p: float) -> float:
    """p-norm of a float64 vector without overflow: max * (sum (|x|/max)^p)^(1/p)."""
    if x.numel() == 0:
        return 0.0
    a = x.abs()
    if torch.isnan(a).any():
        return math.nan
    m = a.max().item()
    if math.isinf(p) or m == 0.0 or math.isinf(m):
        return m
    return m * ((a / m) ** p).sum().item() ** (1.0 / p)


def tensor_norm64(t: Tensor, p: float) -> float:
    """The p-norm of one tensor, in float64 (a Python float)."""
    return _pnorm64(t.detach().to(device="cpu", dtype=torch.float64).reshape(-1), p)


def per_tensor_norms(tensors: list[Tensor], p: float) -> Tensor:
    """Per-tensor norms in the op's result dtype, on CPU."""
    vals = [tensor_norm64(t, p) for t in tensors]
    return torch.tensor(vals, dtype=torch.float64).to(norm_result_dtype(tensors))


def total_norm(tensors: list[Tensor], p: float) -> Tensor:
    """Global norm of the list, as if concatenated, in the op's result dtype (CPU, 0-dim)."""
    if not tensors:
        return torch.tensor(0.0)
    flat = torch.cat([t.detach().to(device="cpu", dtype=torch.float64).reshape(-1) for t in tensors])
    return torch.tensor(_pnorm64(flat, p), dtype=torch.float64).to(norm_result_dtype(tensors))


def clip_scale_(tensors: list[Tensor], total: Tensor, max_norm: float) -> None:
    """tensors *= min(max_norm / (total + 1e-6), 1), computed the way torch does."""
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for t in tensors:
        t.mul_(coef.to(t.device))


def clamp_(tensors: list[Tensor], clip_value: float) -> None:
    """tensors = clamp(tensors, -clip_value, clip_value), NaN kept."""
    for t in tensors:
        t.clamp_(min=-clip_value, max=clip_value)
