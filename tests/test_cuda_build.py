"""The CUDA build registers a CUDA kernel for every op that has a CPU kernel.

Runs everywhere, GPU or not: it only asks the dispatcher what is registered.
Skips when torch or the extension was built without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from trainops import _extension


def _cuda_build() -> bool:
    return bool(torch.version.cuda) and _extension.LOADED and bool(_extension.build_info().get("cuda"))


pytestmark = pytest.mark.skipif(not _cuda_build(), reason="torch or trainops._C was built without CUDA")


def _trainops_ops() -> list[str]:
    return sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith("trainops::"))


def test_every_cpu_kernel_has_a_cuda_kernel():
    with_cpu = [op for op in _trainops_ops() if torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")]
    assert with_cpu, "no trainops op has a CPU kernel: is the extension loaded?"
    missing = [op for op in with_cpu if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
    assert not missing, f"ops with a CPU kernel but no CUDA kernel: {missing}"


def test_clip_ops_use_cuda_kernels():
    assert "cuda" in _extension.CLIP_DEVICES


def test_build_info_names_the_cuda_archs():
    info = _extension.build_info()
    assert info["cuda_archs"], info
