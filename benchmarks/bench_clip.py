"""pytest-benchmark suite: trainops clipping against torch.nn.utils on the local device.

    pytest benchmarks/bench_clip.py --benchmark-group-by=param:case,param:dtype,param:clipping

The gradient sets and their shapes are those of ``trainops bench`` (trainops/bench.py), except the
llama case, held to 2 GiB of gradients here (the suite times every case six ways). Benchmarks
measure only; correctness lives in tests/. The extension must load (TRAINOPS_REQUIRE_EXTENSION=1):
timing the pure-PyTorch fallback as "trainops" would measure something else.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRAINOPS_REQUIRE_EXTENSION", "1")

import pytest
import torch

import trainops
from trainops.bench import DTYPES, case_shapes, make_params

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = ["gpt2", "resnet50", "1k_x_1k", "10k_x_100", "llama"]
IMPLS = {
    "torch_foreach": lambda ps, m: torch.nn.utils.clip_grad_norm_(ps, m, foreach=True),
    "torch_loop": lambda ps, m: torch.nn.utils.clip_grad_norm_(ps, m, foreach=False),
    "trainops": lambda ps, m: trainops.clip_grad_norm_(ps, m),
}
_PARAMS: dict = {}


def _params(case: str, dtype: str):
    key = (case, dtype)
    if key not in _PARAMS:
        _PARAMS.clear()  # keep one gradient set alive at a time
        elem = torch.empty(0, dtype=DTYPES[dtype]).element_size()
        _PARAMS[key] = make_params(case_shapes(case, elem, llama_gb=2.0), DTYPES[dtype], DEVICE)
    return _PARAMS[key]


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("clipping", [False, True])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("case", CASES)
def test_clip_grad_norm(benchmark, case, dtype, clipping, impl):
    params = _params(case, dtype)
    state = {"norm": float(trainops.get_total_norm([p.grad for p in params]))}

    def max_norm() -> float:
        # Triggered: 0.1% under the current norm each call (every element written).
        if not clipping:
            return state["norm"] * 10
        state["norm"] *= 0.999
        return state["norm"]

    fn = IMPLS[impl]

    def run():
        fn(params, max_norm())
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"{case}-{dtype}-{'clip' if clipping else 'noclip'}"
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)


@pytest.mark.parametrize("case", ["gpt2"])
def test_read_floor_vector_norm(benchmark, case):
    """One torch.linalg.vector_norm pass over the same bytes as the fp32 gradient set."""
    numel = sum(p.grad.numel() for p in _params(case, "fp32"))
    flat = torch.randn(numel, device=DEVICE)
    benchmark.group = f"{case}-fp32-noclip"
    benchmark.pedantic(lambda: torch.linalg.vector_norm(flat), rounds=7, warmup_rounds=1)
