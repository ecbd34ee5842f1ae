"""Shared fixtures: the devices to test on, and the float64 oracle."""

from __future__ import annotations

import os

import pytest
import torch

# Tests must exercise the compiled kernels, never the silent fallback.
os.environ.setdefault("TRAINOPS_REQUIRE_EXTENSION", "1")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def device_params():
    """pytest params over devices; CUDA is listed (and skipped) without a GPU."""
    return [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    ]


@pytest.fixture
def threads():
    """Set the intra-op thread count for one test and restore it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def op_error(kind: type[Exception]) -> type[Exception]:
    """What a direct torch.ops.trainops call raises for a TypeError/ValueError.

    The stable-ABI build carries one exception type across the ABI, so there
    the op raises RuntimeError (with the same message); the Python API raises
    `kind` in both builds.
    """
    from trainops import _extension

    return RuntimeError if (_extension.BUILD_META or {}).get("abi") == "stable" else kind
