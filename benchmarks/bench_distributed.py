"""Clipping an FSDP2-sharded model: trainops against torch.nn.utils on CPU ranks (gloo).

    python benchmarks/bench_distributed.py [--ranks 2] [--params 1000] [--reps 15] [--breakdown]

Builds a model with --params parameters (Linear layers, weight + bias each),
shards every layer with FSDP2 ``fully_shard`` over a 1-D CPU mesh, runs one
backward, then times ``clip_grad_norm_`` (clipping triggered) on the DTensor
gradients. Medians over --reps calls, each bracketed by barriers, and the mean
per call of --reps calls in a row (median of 5 runs), as in a training loop;
rank 0 prints the table. torch stacks per-parameter DTensor norms (pytorch issue 169445);
trainops runs one fused kernel over the local shards and one all-reduce.
--breakdown adds rank 0's per-call cost of each step of trainops' call (medians of
200 calls, ranks in lockstep only through the all-reduces).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(
    rank: int, ws: int, init_file: str, n_params: int, reps: int, width: int, breakdown_wanted: bool
) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=ws)
    torch.set_num_threads(1)
    import trainops
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (ws,))
    torch.manual_seed(0)
    layers = [torch.nn.Linear(width, width) for _ in range(n_params // 2)]
    model = torch.nn.Sequential(*layers)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model(torch.randn(4, width)).pow(2).mean().backward()
    params = list(model.parameters())
    grads = [p.grad for p in params]
    base = float(trainops.get_total_norm(grads))

    def timed(fn) -> float:
        """Median of calls each bracketed by barriers: a barrier per call
        (a collective as costly as trainops' own all-reduce) included."""
        fn()  # warm-up
        times = []
        for i in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            dist.barrier()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    def back_to_back(fn) -> float:
        """Mean per call over `reps` calls in a row between two barriers, as
        in a training loop (ranks meet only in the calls' own collectives);
        the median of 5 such runs."""
        fn()
        runs = []
        for _ in range(5):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            dist.barrier()
            runs.append((time.perf_counter() - t0) / reps)
        return statistics.median(runs) * 1e3

    scale = {"n": 0}

    def max_norm() -> float:  # 0.1% under the current norm: clipping triggers every call
        scale["n"] += 1
        return base * 0.999 ** scale["n"]

    torch_clip = lambda: torch.nn.utils.clip_grad_norm_(params, max_norm(), foreach=True)  # noqa: E731
    ours_clip = lambda: trainops.clip_grad_norm_(params, max_norm())  # noqa: E731
    ms_torch = timed(torch_clip)
    ms_ours = timed(ours_clip)
    b2b_torch = back_to_back(torch_clip)
    b2b_ours = back_to_back(ours_clip)
    t_torch = torch.nn.utils.get_total_norm(grads)
    t_torch = float(t_torch.full_tensor()) if hasattr(t_torch, "full_tensor") else float(t_torch)
    t_ours = float(trainops.get_total_norm(grads))
    breakdown = _breakdown(params, grads) if breakdown_wanted else {}
    if rank == 0:
        print(f"ranks {ws}, {len(params)} parameters (FSDP2, Linear({width},{width}) layers), gloo, 1 thread/rank")
        print(f"{'impl':<32} {'median ms':>10}")
        print(f"{'torch clip_grad_norm_ (foreach)':<32} {ms_torch:>10.2f}")
        print(f"{'trainops.clip_grad_norm_':<32} {ms_ours:>10.2f}")
        print(f"speedup {ms_torch / ms_ours:.1f}x; totals agree to {abs(t_torch - t_ours) / t_ours:.1e} (relative)")
        print(
            f"back to back ({reps} calls in a row): torch {b2b_torch:.2f} ms, trainops {b2b_ours:.2f} ms, "
            f"speedup {b2b_torch / b2b_ours:.1f}x"
        )
        for name, ms in breakdown.items():
            print(f"  {name:<36} {ms:>7.3f} ms")
    # Every rank done before any tears down (a rank leaving early aborted the
    # other in gloo's teardown now and then).
    dist.barrier()
    dist.destroy_process_group()


def _breakdown(params: list, grads: list) -> dict[str, float]:
    """Rank 0's per-call cost of the steps of trainops.clip_grad_norm_ (every rank runs them)."""
    import trainops
    from trainops import clip, distributed

    local = distributed.local_tensors(grads)
    total = torch.tensor(1.0)
    payload = torch.zeros(1, dtype=torch.float64)
    steps = {
        "read .grad (1 per parameter)": lambda: clip._grads_of(params),
        "bucketing (spec -> collective)": lambda: distributed.dtensor_buckets(grads),
        "fused local norm op": lambda: torch.ops.trainops.multi_tensor_norm(local, 2.0, False),
        "all-reduce, 8 bytes": lambda: dist.all_reduce(payload),
        # coefficient 0.9999: clipping triggers, the grads shrink by 2% over the 200 calls (no denormals)
        "fused scale op (clipping)": lambda: torch.ops.trainops.multi_tensor_clip_scale_(local, total, 0.9999),
        "get_total_norm": lambda: trainops.get_total_norm(grads),
        # the first call scales the norm to 1e-3, each later one by 0.999 (clipping triggers every call)
        "clip_grad_norm_ (no barrier)": lambda: trainops.clip_grad_norm_(params, 1e-3),
    }
    out = {}
    for name, fn in steps.items():
        fn()
        dist.barrier()
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--params", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--breakdown", action="store_true", help="also time each step of trainops' call")
    args = parser.parse_args()
    init_file = tempfile.mktemp(prefix="trainops_bench_")
    worker_args = (args.ranks, init_file, args.params, args.reps, args.width, args.breakdown)
    mp.spawn(_worker, args=worker_args, nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
