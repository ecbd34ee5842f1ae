"""CPU benchmarks of trainops.init against torch.nn.init on GPT-2 small's parameter list.

GPT-2 small: 148 tensors, 124,439,808 fp32 parameters (498 MB). Compared side
by side in one run, on 2 threads unless a case says otherwise:

* trainops normal(0, 0.02) over the whole list (one fused call) vs a loop of
  torch.nn.init.normal_;
* trainops trunc_normal_(0, 0.02, -0.04, 0.04) vs a loop of
  torch.nn.init.trunc_normal_ (five passes per tensor in torch);
* trainops normal on 1 thread (for the 1 -> 2 thread scaling);
* a loop of fill_ over the same tensors: the write-bandwidth floor (every
  element written once, nothing read).

Run: ``pytest benchmarks/bench_init.py --benchmark-columns=median,min,rounds``.
Speedup = torch median / trainops median; fraction of the floor = fill_ median
/ trainops median.

Measured 2026-11-29 on a shared 2-vCPU Xeon @ 2.8 GHz (AVX-512), medians, with
`trainops bench --suite init` (third session, see benchmarks/RESULTS.md):
normal 63-81 ms (2 threads) / 123-125 ms (1 thread) vs 640-715 ms for the
torch loop (7.9-11.3x; 1 -> 2 threads 1.95x); fill_ 32-33 ms, so normal runs
at 41-50% of the write floor; trunc_normal_ 115-136 ms vs 6,979-7,913 ms
(58-61x).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRAINOPS_REQUIRE_EXTENSION", "1")  # never time the fallback as trainops

import pytest
import torch

from trainops import init

from trainops.bench import gpt2_shapes as gpt2_small_shapes


@pytest.fixture(scope="module")
def params() -> list[torch.Tensor]:
    ts = [torch.empty(s) for s in gpt2_small_shapes()]
    assert len(ts) == 148 and sum(t.numel() for t in ts) == 124_439_808
    return ts


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


KEYS = list(range(148))


def _run(benchmark, fn, rounds):
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)


def _each(tensors, fn, *args):
    """A loop calling ``fn(t, *args)`` on every tensor: one call per tensor, as torch.nn.init is used."""

    def loop():
        for t in tensors:
            fn(t, *args)

    return loop


@pytest.mark.benchmark(group="gpt2-normal")
def test_trainops_normal_2threads(benchmark, params, threads):
    threads(2)
    _run(benchmark, lambda: init.init_tensors_(params, init.InitSpec.normal(0.0, 0.02), seed=0, keys=KEYS), 10)


@pytest.mark.benchmark(group="gpt2-normal")
def test_trainops_normal_1thread(benchmark, params, threads):
    threads(1)
    _run(benchmark, lambda: init.init_tensors_(params, init.InitSpec.normal(0.0, 0.02), seed=0, keys=KEYS), 5)


@pytest.mark.benchmark(group="gpt2-normal")
def test_torch_normal_loop(benchmark, params, threads):
    threads(2)
    _run(benchmark, _each(params, torch.nn.init.normal_, 0.0, 0.02), 3)


@pytest.mark.benchmark(group="gpt2-normal")
def test_fill_floor(benchmark, params, threads):
    threads(2)
    _run(benchmark, _each(params, torch.Tensor.fill_, 1.0), 10)


@pytest.mark.benchmark(group="gpt2-trunc-normal")
def test_trainops_trunc_normal_2threads(benchmark, params, threads):
    threads(2)
    spec = init.InitSpec.trunc_normal(0.0, 0.02, -0.04, 0.04)
    _run(benchmark, lambda: init.init_tensors_(params, spec, seed=0, keys=KEYS), 5)


@pytest.mark.benchmark(group="gpt2-trunc-normal")
def test_torch_trunc_normal_loop(benchmark, params, threads):
    threads(2)
    _run(benchmark, _each(params, torch.nn.init.trunc_normal_, 0.0, 0.02, -0.04, 0.04), 3)


# One call per tensor, as `model.apply(init_fn)` and custom `reset_parameters`
# do: 1,000 tensors of 768 elements (the biases and norms of a deep model),
# where the per-call cost matters more than the bytes.
@pytest.fixture(scope="module")
def small() -> list[torch.Tensor]:
    return [torch.empty(768) for _ in range(1000)]


@pytest.mark.benchmark(group="per-call-normal")
def test_trainops_normal_per_call(benchmark, small, threads):
    threads(2)
    _run(benchmark, _each(small, init.normal_, 0.0, 0.02), 20)


@pytest.mark.benchmark(group="per-call-normal")
def test_torch_normal_per_call(benchmark, small, threads):
    threads(2)
    _run(benchmark, _each(small, torch.nn.init.normal_, 0.0, 0.02), 20)
