"""Reading compiled CUDA code without a GPU: find the tools, parse SASS.

Used by tests/test_cuda_build.py (properties of the extension's kernels) and
benchmarks/sass_counts.py (instruction counts of the init transforms).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from typing import NamedTuple

# One instruction line of `cuobjdump -sass`: /*0250*/  [@!P1] OPCODE.MODIFIERS operands ;
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LENGTH_PREFIX = re.compile(r"\d+")


class Instruction(NamedTuple):
    address: int
    predicate: str  # "" when unconditional, else e.g. "@!P1"
    opcode: str  # with its modifiers, e.g. "LDG.E.128.CONSTANT"
    operands: str


def find_cuda_home() -> str | None:
    """The CUDA toolkit, searched in setup.py's order (CUDA_HOME, CUDA_PATH, the
    nvcc on PATH, /usr/local/cuda); None if there is none."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    return next((h for h in candidates if h and os.path.isfile(os.path.join(h, "bin", "nvcc"))), None)


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, the CUDA toolkit, or the copy that triton (a
    dependency of torch's CUDA wheels) ships; None if there is none."""
    candidates = [shutil.which("cuobjdump")]
    home = find_cuda_home()
    if home:
        candidates.append(os.path.join(home, "bin", "cuobjdump"))
    triton = importlib.util.find_spec("triton")  # located, not imported
    for location in (triton.submodule_search_locations or []) if triton else []:
        candidates.append(os.path.join(location, "backends", "nvidia", "bin", "cuobjdump"))
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def kernel_name(mangled: str) -> str:
    """The kernel's own name in an Itanium-mangled symbol: the last
    length-prefixed identifier ending in ``_kernel`` (18norm_chunks_kernelI...
    -> norm_chunks_kernel); the symbol itself if there is none (extern "C")."""
    names = []
    i = 0
    while i < len(mangled):
        found = _LENGTH_PREFIX.search(mangled, i)
        if not found:
            break
        length, start = int(found.group()), found.end()
        names.append(mangled[start : start + length])
        i = start + max(length, 1)
    kernels = [n for n in names if n.endswith("_kernel")]
    return kernels[-1] if kernels else mangled


def parse_sass(text: str) -> dict[tuple[str, str], list[Instruction]]:
    """The instructions, in address order, of every (arch, mangled function) in
    `cuobjdump -sass` output."""
    functions: dict[tuple[str, str], list[Instruction]] = {}
    arch = function = None
    for line in text.splitlines():
        if found := re.match(r"\s*code for (sm_\w+)", line):
            arch = found.group(1)
        elif found := re.match(r"\s*Function : (\S+)", line):
            function = found.group(1)
            functions[(arch, function)] = []
        elif function and (found := _INSTRUCTION.search(line)):
            address, predicate, opcode, operands = found.groups()
            functions[(arch, function)].append(
                Instruction(int(address, 16), (predicate or "").strip(), opcode, operands.strip())
            )
    return functions


def main_path(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions up to the first unconditional EXIT: the kernel's own
    code. What the compiler places after it are routines it calls or jumps to
    rarely (a called pow, the special cases of the IEEE sqrt)."""
    for i, ins in enumerate(instructions):
        if ins.opcode == "EXIT" and not ins.predicate:
            return instructions[: i + 1]
    raise ValueError("no unconditional EXIT in the function")


def loops(instructions: list[Instruction]) -> list[tuple[int, int]]:
    """(first, last) address of every loop: a branch back to an earlier address."""
    spans = []
    for ins in instructions:
        if ins.opcode.startswith("BRA") and (target := re.search(r"0x([0-9a-f]+)", ins.operands)):
            if int(target.group(1), 16) <= ins.address:
                spans.append((int(target.group(1), 16), ins.address))
    return spans


def is_two_norm_kernel(mangled: str) -> bool:
    """The p = 2 norm kernel, norm_chunks_kernel<NormKind::kTwo> (kTwo = 1)."""
    return kernel_name(mangled) == "norm_chunks_kernel" and "NormKindE1E" in mangled


def norm_loop_costs(instructions: list[Instruction]) -> dict[str, tuple[int, int, int]]:
    """{dtype: (instructions, elements, 16-byte loads)} of each plain main loop
    of a p = 2 norm kernel (``norm_chunks_kernel<NormKind::kTwo>``): the loops
    that load 16 bytes at a time and sum in the accumulation type, not the
    rescue pass (which divides, so holds MUFU). Elements are counted by their
    squares (FMUL, DMUL for fp64); the dtype follows from elements per load,
    and fp16 from its conversion (HADD2, or I2F in the integer code it
    replaced). This relies on the plain loops squaring with FMUL / DMUL
    (--fmad=false) and on nothing else there multiplying: the fp16 loop
    before the twentieth session also multiplied in its conversion and is
    not recognised. NOPs (padding) are not counted. A loop that matches
    none is left out; of several loops of one
    dtype (the main loop and a bounds-checked remainder), the leanest."""
    costs: dict[str, tuple[int, int, int]] = {}
    for lo, hi in loops(instructions):
        body = [ins for ins in instructions if lo <= ins.address <= hi and ins.opcode != "NOP"]
        ops = [ins.opcode.split(".")[0] for ins in body]
        loads = sum(ins.opcode.startswith("LDG.E.128") for ins in body)
        if not loads or "MUFU" in ops:
            continue
        squares = ops.count("FMUL") or ops.count("DMUL")
        per_load = squares / loads
        if per_load == 2:
            dtype = "fp64"
        elif per_load == 4:
            dtype = "fp32"
        elif per_load == 8:
            dtype = "fp16" if "HADD2" in ops or "I2F" in ops else "bf16"
        else:
            continue
        if dtype not in costs or len(body) / squares < costs[dtype][0] / costs[dtype][1]:
            costs[dtype] = (len(body), squares, loads)  # the leanest: the bounds-checked remainder is another loop
    return costs
