"""Reading compiled CUDA code without a GPU: find cuobjdump, parse its SASS.

Used by tests/test_cuda_build.py (properties of the extension's kernels) and
benchmarks/sass_counts.py (instruction counts of the init transforms).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil

# An instruction line of `cuobjdump -sass`: /*0250*/ [@!P1] OPCODE.MODIFIERS ...
_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, the CUDA toolkit, or the copy that triton (a
    dependency of torch's CUDA wheels) ships; None if there is none."""
    candidates = [shutil.which("cuobjdump")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "cuobjdump"))
    triton = importlib.util.find_spec("triton")  # located, not imported
    for location in (triton.submodule_search_locations or []) if triton else []:
        candidates.append(os.path.join(location, "backends", "nvidia", "bin", "cuobjdump"))
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def kernel_name(mangled: str) -> str:
    """The kernel's own name in a mangled symbol (18norm_chunks_kernelI... -> norm_chunks_kernel)."""
    found = re.search(r"\d+([A-Za-z_]+_kernel)", mangled)
    return found.group(1) if found else mangled


def parse_sass(text: str) -> dict[tuple[str, str], list[str]]:
    """Opcodes in program order per (arch, mangled function) of `cuobjdump -sass` output."""
    functions: dict[tuple[str, str], list[str]] = {}
    arch = function = None
    for line in text.splitlines():
        if found := re.match(r"\s*code for (sm_\w+)", line):
            arch = found.group(1)
        elif found := re.match(r"\s*Function : (\S+)", line):
            function = found.group(1)
            functions[(arch, function)] = []
        elif function and (found := _INSTRUCTION.search(line)):
            functions[(arch, function)].append(found.group(1))
    return functions
