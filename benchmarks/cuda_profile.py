"""Where the time of one GPU clip call goes: host, device, and each kernel.

benchmarks/bench_cuda_clip.py answers "how much faster than torch"; this one
answers "why not faster", so that one GPU session can both measure and act.
For each case and each implementation (torch.nn.utils.clip_grad_norm_ with
foreach, trainops.clip_grad_norm_, and the trainops ops alone) it prints:

* eager ms: CUDA-event medians of back-to-back calls (what a training loop sees);
* device us: the median replay of a CUDA graph holding 10 calls, per call. No
  host work, and the gaps between kernels shrink to the graph's: close to the
  kernels' own time. Triggered cases capture
  "restore the grads, then clip" and subtract a graph of the restore alone;
* host us: the median time for one call to return on the host (the GPU idle
  before each call). If host us > device us, back-to-back calls are bound by
  the host, and faster kernels would not show in eager ms; for the fp32
  untriggered cases, the host time of its parts too (the .grad walk, an op
  call on as many empty tensors, the norm op, the scale op);
* % copy BW: the bytes a case must move (one read untriggered; read, read and
  write when triggered) over device us, against the device-to-device copy
  bandwidth measured in the same run.

With --kernels it also lists every kernel of one untriggered call (torch.profiler). With
--variant NAME it prints only the trainops ops' device time, one line per
case, tagged NAME: benchmarks/cuda_variants.sh runs it once per build of
csrc/cuda/clip.cu's compile-time knobs, alternating the builds.

Usage: python benchmarks/cuda_profile.py [--kernels] [--variant NAME] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda_clip import (  # noqa: E402
    CLIP,
    clip_cases,
    copy_bandwidth_gbs,
    device_us,
    eager_ms,
    make_params,
)

import trainops  # noqa: E402
from trainops import clip as _clip  # noqa: E402

norm_op = torch.ops.trainops.multi_tensor_norm
scale_op = torch.ops.trainops.multi_tensor_clip_scale_
fused_op = torch.ops.trainops.multi_tensor_clip_grad_norm_

def host_us(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    torch.cuda.synchronize()
    return statistics.median(samples)


def kernel_table(fn: Callable[[], object], calls: int = 5) -> list[tuple[str, float, float]]:
    """(kernel, launches per call, device us per call) of fn, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if t > 0:
            rows.append((e.key, e.count / calls, t / calls))
    return sorted(rows, key=lambda r: -r[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", action="store_true", help="list every kernel of one call")
    parser.add_argument("--variant", help="print only the ops' device time, tagged with this name")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or "cuda" not in trainops._extension.CLIP_DEVICES:
        print("cuda_profile: no CUDA device, or no CUDA kernels in this build", file=sys.stderr)
        return 2
    reps = args.reps
    copy_gbs, read_gbs = copy_bandwidth_gbs(reps)
    if args.variant is None:
        print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}: copy {copy_gbs:.0f} GB/s, "
              f"vector_norm read {read_gbs:.0f} GB/s")
    results = []
    for name, shapes, dtype, max_norm in clip_cases():
        params = make_params(shapes, dtype)
        grads = [p.grad for p in params]
        nbytes = sum(g.numel() * g.element_size() for g in grads)
        clips = max_norm == CLIP
        moved = 3 * nbytes if clips else nbytes
        restore = None
        if clips:
            saved = [g.clone() for g in grads]

            def restore(grads=grads, saved=saved) -> None:
                torch._foreach_copy_(grads, saved)

        def ops(grads=grads, max_norm=max_norm) -> None:
            fused_op(grads, max_norm, 2.0)

        impls: list[tuple[str, Callable[[], object]]] = [("ops", ops)]
        if args.variant is None:
            impls = [
                ("torch", lambda params=params, max_norm=max_norm: torch.nn.utils.clip_grad_norm_(
                    params, max_norm, foreach=True)),
                ("trainops", lambda params=params, max_norm=max_norm: trainops.clip_grad_norm_(params, max_norm)),
                ("ops", ops),
            ]
        for impl, fn in impls:
            row = {"case": name, "impl": impl, "variant": args.variant, "bytes": nbytes}
            try:
                row["device_us"] = device_us(fn, restore, reps)
            except Exception as e:  # capture refused: report, do not stop
                row["device_us"] = float("nan")
                row["capture_error"] = f"{type(e).__name__}: {e}"[:200]
            row["pct_copy_bw"] = 100 * moved / (copy_gbs * 1e3) / row["device_us"]
            if args.variant is None:
                row["eager_ms"] = eager_ms(fn, restore, reps)
                row["host_us"] = host_us(fn, reps=max(reps, 30))
            results.append(row)
        if args.variant is None and not clips and dtype == torch.float32:
            # The host side of one call in parts: the Python walk over .grad, an
            # op call on as many empty tensors (crossing and checks, no chunk),
            # and the norm op and the scale op alone.
            empties = [torch.empty(0, device="cuda") for _ in grads]
            total = norm_op(grads, 2.0, False)[0]
            parts = {
                "walk_us": host_us(lambda: _clip._grads_of(params), reps=30),
                "empty_op_call_us": host_us(lambda: norm_op(empties, 2.0, False), reps=30),
                "norm_op_us": host_us(lambda: norm_op(grads, 2.0, False), reps=30),
                "scale_op_us": host_us(lambda: scale_op(grads, total, max_norm), reps=30),
            }
            results.append({"case": name, "impl": "parts", **parts})
        # Untriggered cases only: by now the triggered ones' grads sit at
        # max_norm, so trainops would not write (torch always does).
        if args.kernels and name in ("gpt2 fp32 no-clip", "10k x 100 fp32 no-clip"):
            for impl, fn in impls:
                if impl == "ops":
                    continue
                print(f"-- kernels of one {impl} call, {name}:")
                for key, count, us in kernel_table(fn)[:8]:
                    print(f"   {us:9.1f} us  x{count:<6.1f} {key[:90]}")
        del params, grads
        torch.cuda.empty_cache()

    if args.variant is not None:
        for r in results:
            print(f"variant {args.variant:<10} {r['case']:<24} ops device {r['device_us']:9.1f} us "
                  f"{r['pct_copy_bw']:6.1f}% copy BW")
    else:
        print(f"{'case':<24} {'impl':<9} {'eager ms':>9} {'device us':>10} {'host us':>9} {'% copy BW':>9}")
        for r in results:
            if r["impl"] == "parts":
                print(f"{r['case']:<24} host parts: .grad walk {r['walk_us']:.0f} us, norm op on as many empty "
                      f"tensors {r['empty_op_call_us']:.0f} us, norm op {r['norm_op_us']:.0f} us, "
                      f"scale op {r['scale_op_us']:.0f} us")
                continue
            print(f"{r['case']:<24} {r['impl']:<9} {r['eager_ms']:>9.3f} {r['device_us']:>10.1f} "
                  f"{r['host_us']:>9.1f} {r['pct_copy_bw']:>8.1f}%"
                  + (f"  capture failed: {r['capture_error']}" if "capture_error" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"copy_gbs": copy_gbs, "read_gbs": read_gbs, "rows": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
