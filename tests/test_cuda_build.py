"""The CUDA build registers a CUDA kernel for every op that has a CPU kernel,
and its machine code has the properties the CUDA kernels promise.

Runs everywhere, GPU or not: it asks the dispatcher what is registered and
reads the compiled code with cuobjdump. Skips when torch or the extension was
built without CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Callable

import pytest
import torch

from trainops import _extension

from . import sass_tools


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


# ---------------------------------------------------------------------------
# What the compiled GPU code does, read from its machine code (SASS) with
# cuobjdump: properties of the CUDA issue that hold on any GPU and so can be
# checked on a machine without one. cuobjdump comes with the CUDA toolkit and
# with triton (a dependency of torch's CUDA wheels); `make cuda-check` sets
# TRAINOPS_REQUIRE_CUOBJDUMP=1 so that CI fails instead of skipping.

# Kernels that stream the gradients: each must use 16-byte vector accesses.
# init_tensors_kernel writes a whole Philox block per store: 16 bytes for fp32
# and fp64, 8 for fp16 / bf16.
_LOADING_KERNELS = ("norm_chunks_kernel", "clip_scale_kernel", "clamp_kernel")
_STORING_KERNELS = ("clip_scale_kernel", "clamp_kernel", "init_tensors_kernel")
_STORING_8_BYTE_KERNELS = ("init_tensors_kernel",)


def _extension_file() -> str:
    spec = importlib.util.find_spec("trainops._C")
    assert spec is not None and spec.origin, "trainops._C not found"
    return spec.origin


@pytest.fixture(scope="module")
def cuobjdump() -> Callable[..., str]:
    tool = sass_tools.find_cuobjdump()
    if tool is None:
        message = "cuobjdump not found (CUDA toolkit bin/ or triton's backends/nvidia/bin/)"
        if os.environ.get("TRAINOPS_REQUIRE_CUOBJDUMP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    lib = _extension_file()
    return lambda *flags: subprocess.run([tool, *flags, lib], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def sass(cuobjdump) -> dict[tuple[str, str], list[sass_tools.Instruction]]:
    """Instructions per (arch, mangled kernel) of the extension's SASS."""
    kernels = sass_tools.parse_sass(cuobjdump("-sass"))
    assert kernels, "no SASS in the extension"
    assert all(kernels.values()), "a kernel parsed to no instructions: has cuobjdump's format changed?"
    return kernels


def _release_build() -> bool:
    return not (_extension._read_build_meta() or {}).get("debug", False)


def test_sass_has_every_arch_of_the_build(cuobjdump):
    """Machine code for each arch of TORCH_CUDA_ARCH_LIST, PTX for the +PTX ones."""
    listed = _extension.build_info()["cuda_archs"].split()
    assert all(re.fullmatch(r"\d+\.\d+a?(\+PTX)?", a) for a in listed), f"arch names not understood: {listed}"
    want_elf = {"sm_" + a.replace("+PTX", "").replace(".", "") for a in listed}
    want_ptx = {"sm_" + a.replace("+PTX", "").replace(".", "") for a in listed if a.endswith("+PTX")}
    listing = cuobjdump("-lelf", "-lptx")
    for source in ("clip", "init"):
        # clip.sm_90.cubin, or clip.1.sm_90.cubin (builds without -lineinfo)
        elf = set(re.findall(rf"ELF file\s+\d+: {source}(?:\.\d+)?\.(sm_\w+)\.cubin", listing))
        ptx = set(re.findall(rf"PTX file\s+\d+: {source}(?:\.\d+)?\.(sm_\w+)\.ptx", listing))
        assert (elf, ptx) == (want_elf, want_ptx), (source, listed, listing)


# Integer counters that elect the block finishing a tensor (the
# TRAINOPS_CUDA_FUSED_FINALIZE build): a plain integer add to global memory.
_COUNTER_ATOMIC = re.compile(r"(ATOMG|RED)\.E\.ADD(\.STRONG\.GPU)?$")


def test_no_atomics(sass):
    """Reductions combine in a fixed order. Float atomics would make the
    rounding depend on arrival order (and a float atomicAdd to shared memory is
    a compare-and-swap loop whose opcode names no float type), so the check
    admits no atomic at all but one: the integer counters of the fused norm
    kernel, whose finishing blocks still combine in a fixed order."""
    atomics = {
        (arch, sass_tools.kernel_name(name), ins.opcode)
        for (arch, name), instructions in sass.items()
        for ins in instructions
        if re.match(r"(ATOM|RED)(?!UX)", ins.opcode)
    }
    allowed = {a for a in atomics if a[1] == "norm_chunks_fused_kernel" and _COUNTER_ATOMIC.match(a[2])}
    assert atomics == allowed


def test_fused_finalize_kernel_is_built_when_asked(sass):
    """`make cuda-variant-check` builds clip.cu with -DTRAINOPS_CUDA_FUSED_FINALIZE=1
    and says so (TRAINOPS_EXPECT_FUSED_FINALIZE=1): the variant must really be
    in that binary, and only there."""
    names = {sass_tools.kernel_name(name) for (_, name) in sass}
    expected = os.environ.get("TRAINOPS_EXPECT_FUSED_FINALIZE") == "1"
    assert ("norm_chunks_fused_kernel" in names) == expected


@pytest.mark.skipif(not _release_build(), reason="a TRAINOPS_DEBUG=1 (-O0) build")
def test_streaming_kernels_use_16_byte_accesses_in_their_loops(sass):
    """The kernels that stream the gradients load (and scale and clamp store)
    16 bytes per instruction inside a loop, not only somewhere; the init kernel
    stores 16 (fp32, fp64) and 8 (fp16, bf16) bytes per instruction."""

    def in_a_loop(instructions, prefix):
        spans = sass_tools.loops(instructions)
        return any(
            ins.opcode.startswith(prefix) and any(a <= ins.address <= b for a, b in spans) for ins in instructions
        )

    for (arch, name), instructions in sass.items():
        kernel = sass_tools.kernel_name(name)
        if kernel in _LOADING_KERNELS:
            assert in_a_loop(instructions, "LDG.E.128"), (arch, kernel, "no 16-byte loads in a loop")
        if kernel in _STORING_KERNELS:
            assert in_a_loop(instructions, "STG.E.128"), (arch, kernel, "no 16-byte stores in a loop")
        if kernel in _STORING_8_BYTE_KERNELS:
            assert in_a_loop(instructions, "STG.E.64"), (arch, kernel, "no 8-byte stores in a loop")
    present = {sass_tools.kernel_name(name) for _, name in sass}
    assert set(_LOADING_KERNELS) | set(_STORING_KERNELS) <= present, present


@pytest.mark.skipif(not _release_build(), reason="a TRAINOPS_DEBUG=1 (-O0) build")
def test_no_register_spills(sass):
    """No kernel's own code stores to or loads from local memory (STL / LDL):
    spilled registers would. Routines placed after the kernel's EXIT (a called
    pow saving its registers) do not count. cuobjdump's LOCAL column is no
    help: spills are counted under STACK."""
    spilling = {
        (arch, sass_tools.kernel_name(name))
        for (arch, name), instructions in sass.items()
        if any(ins.opcode.startswith(("STL", "LDL")) for ins in sass_tools.main_path(instructions))
    }
    assert not spilling


# SASS instructions per element of the p = 2 norm's main loop, per dtype, at
# most (nvcc 13.0, sm_80 and sm_90: 4.1 fp32, 4.8 fp16 and bf16, 7.2 fp64).
# Other archs are not checked: sm_120's code pads the loops (fp64 23 an
# element there), and these limits were measured on these two.
# Before the twentieth session they were 7.6, 19.3, 8.1 and 13.0: a NaN-sticky
# max of two compares and a select per element, fp16 converted in ~18 integer
# instructions, bf16 lanes extracted one by one, and bounds checks in every
# iteration. The fp16 loop could not issue fast enough to read at an H200's
# copy bandwidth (benchmarks/sass_counts.py).
_NORM_LOOP_ARCHS = ("sm_80", "sm_90")
_NORM_LOOP_MAX_INSTRUCTIONS_PER_ELEMENT = {"fp16": 5.5, "bf16": 5.5, "fp32": 4.5, "fp64": 8.0}


@pytest.mark.skipif(not _release_build(), reason="a TRAINOPS_DEBUG=1 (-O0) build")
def test_norm_loops_stay_lean(sass):
    """The p = 2 norm kernel's main loop of each dtype issues few instructions
    per element: at 19 per fp16 element the loop, not memory, set the pace."""
    found = False
    for (arch, name), instructions in sass.items():
        if not sass_tools.is_two_norm_kernel(name) or arch not in _NORM_LOOP_ARCHS:
            continue
        found = True
        costs = sass_tools.norm_loop_costs(instructions)
        assert set(costs) == set(_NORM_LOOP_MAX_INSTRUCTIONS_PER_ELEMENT), (arch, costs)
        per_element = {dtype: count / elements for dtype, (count, elements, _) in costs.items()}
        assert all(per_element[d] <= limit for d, limit in _NORM_LOOP_MAX_INSTRUCTIONS_PER_ELEMENT.items()), (
            arch,
            per_element,
        )
    if not found:
        pytest.skip(f"no p = 2 norm kernel for {' or '.join(_NORM_LOOP_ARCHS)} in this build")
