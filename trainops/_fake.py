"""Fake (meta) kernels of the clipping ops, for torch.compile and FakeTensor.

They describe output shapes and dtypes only; the in-place ops return nothing.
Registered when the compiled extension is loaded.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _result_dtype(tensors: list[Tensor]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_one_device(tensors: list[Tensor], op: str) -> None:
    # Mixed lists (e.g. CPU + meta) are dispatched here rather than to a real
    # kernel; reject them with the real kernels' error.
    for i, t in enumerate(tensors):
        if t.device != tensors[0].device:
            raise ValueError(
                f"trainops.{op}: all tensors of one call must be on one device, but tensor 0 is on "
                f"{tensors[0].device} and tensor {i} is on {t.device}"
            )


def register() -> None:
    @torch.library.register_fake("trainops::multi_tensor_norm")
    def _norm_fake(tensors: list[Tensor], norm_type: float, per_tensor: bool) -> tuple[Tensor, Tensor]:
        _check_one_device(tensors, "multi_tensor_norm")
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = _result_dtype(tensors)
        total = torch.empty((), dtype=dtype, device=device)
        per = torch.empty((len(tensors) if per_tensor else 0,), dtype=dtype, device=device)
        return total, per

    @torch.library.register_fake("trainops::multi_tensor_clip_scale_")
    def _scale_fake(tensors: list[Tensor], total_norm: Tensor, max_norm: float) -> None:
        _check_one_device(tensors, "multi_tensor_clip_scale_")

    @torch.library.register_fake("trainops::multi_tensor_clip_grad_norm_")
    def _clip_fake(tensors: list[Tensor], max_norm: float, norm_type: float) -> Tensor:
        _check_one_device(tensors, "multi_tensor_clip_grad_norm_")
        device = tensors[0].device if tensors else torch.device("cpu")
        return torch.empty((), dtype=_result_dtype(tensors), device=device)

    @torch.library.register_fake("trainops::multi_tensor_clamp_")
    def _clamp_fake(tensors: list[Tensor], clip_value: float) -> None:
        _check_one_device(tensors, "multi_tensor_clamp_")
