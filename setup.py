"""Build of the trainops extension (trainops._C).

Build switches (environment variables), all optional:

  TRAINOPS_CUDA=auto|0|1   auto (default): compile the CUDA kernels when a CUDA
                           toolkit is found and torch is a CUDA build (no GPU is
                           needed at build time). 0: CPU only. 1: require CUDA.
  CUDA_HOME / CUDA_PATH    the CUDA toolkit; default: the directory above the
                           `nvcc` on PATH, else /usr/local/cuda.
  TORCH_CUDA_ARCH_LIST     GPU architectures, default "8.0;9.0+PTX": machine
                           code for A100 (sm_80) and H100/H200 (sm_90) plus PTX
                           that newer GPUs JIT-compile.
  MAX_JOBS                 parallel compile jobs (read by torch's ninja build).
  TRAINOPS_ABI=auto|stable|aten
                           stable: build against the LibTorch stable ABI
                           (needs torch >= 2.10 to build); the binary loads
                           under every torch >= 2.10, so one wheel serves them
                           all. aten: the version-specific C++ API (torch 2.6+);
                           the binary loads only under the torch it was built
                           against. auto (default): stable when the installed
                           torch is >= 2.10, else aten.
  TRAINOPS_LOCAL_VERSION   local version tag of the package (default: cpu, or
                           cuXYZ for a CUDA build, e.g. 0.1.0+cu130); "none"
                           drops it.
  TRAINOPS_DEBUG=1         -O0 -g builds.

CPU kernels are always built, portable (no -march=native): the hot loops are
compiled for baseline x86-64, AVX2 and AVX-512 and picked at run time
(csrc/cpu/cpu_isa.h). The compiled module is a Python limited-API (abi3)
extension with an empty module init; ops are registered with TORCH_LIBRARY.
"""

from __future__ import annotations

import glob
import json
import os
import runpy
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"
PY_LIMITED_API = "0x030A0000"  # CPython 3.10, the oldest torch >= 2.6 supports here
# The stable-ABI build targets this torch: the oldest whose stable ABI has the
# list arguments (Tensor[], int[], float[]) and the ops the kernels need.
STABLE_ABI_MIN_TORCH = (2, 10)


def _find_cuda_home() -> str | None:
    # Candidates in order; the first that looks like a toolkit (nvcc and the
    # runtime headers) wins. `nvcc` on PATH may be a wrapper script (e.g.
    # /usr/local/bin/nvcc exec'ing the real one), so its parent alone is not
    # trusted.
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if (
            home
            and os.path.exists(os.path.join(home, "bin", "nvcc"))
            and os.path.exists(os.path.join(home, "include", "cuda_runtime.h"))
        ):
            return home
    return None


def _nvidia_wheel_includes() -> list[str]:
    """CUDA headers shipped in torch's `nvidia` pip packages (e.g. cusparse.h)."""
    dirs = []
    for entry in sys.path:
        base = os.path.join(entry, "nvidia")
        if os.path.isdir(base):
            dirs += sorted(d for d in glob.glob(os.path.join(base, "*", "include")) if os.path.isdir(d))
    return list(dict.fromkeys(dirs))


# torch.utils.cpp_extension reads CUDA_HOME when it is imported: set it first.
_cuda_home = _find_cuda_home()
if _cuda_home and not os.environ.get("CUDA_HOME"):
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda() -> bool:
    mode = os.environ.get("TRAINOPS_CUDA", "auto").lower()
    available = _cuda_home is not None and torch.version.cuda is not None
    if mode in ("0", "off", "false", "no"):
        return False
    if mode in ("1", "on", "true", "yes"):
        if not available:
            raise RuntimeError(
                "TRAINOPS_CUDA=1 but no CUDA build is possible: "
                f"CUDA toolkit={_cuda_home!r}, torch.version.cuda={torch.version.cuda!r}"
            )
        return True
    return available


def _version() -> str:
    with open(os.path.join(ROOT, "trainops", "version.py")) as f:
        scope: dict = {}
        exec(f.read(), scope)
    return scope["__version__"]


def _torch_version_tuple() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _want_stable_abi() -> bool:
    mode = os.environ.get("TRAINOPS_ABI", "auto").lower()
    if mode not in ("auto", "stable", "aten"):
        raise RuntimeError(f"TRAINOPS_ABI must be auto, stable or aten, got {mode!r}")
    new_enough = _torch_version_tuple() >= STABLE_ABI_MIN_TORCH
    if mode == "stable" and not new_enough:
        raise RuntimeError(
            f"TRAINOPS_ABI=stable needs torch >= {'.'.join(map(str, STABLE_ABI_MIN_TORCH))} to build, "
            f"found {torch.__version__}; use TRAINOPS_ABI=aten"
        )
    return mode == "stable" or (mode == "auto" and new_enough)


def _local_version(with_cuda: bool) -> str:
    tag = os.environ.get("TRAINOPS_LOCAL_VERSION")
    # A source archive is the same for every variant, and a build from one
    # must keep its version (pip checks that it matches the sdist's): no tag
    # unless asked for.
    from_sdist = os.path.exists(os.path.join(ROOT, "PKG-INFO"))
    if tag is None and ("sdist" in sys.argv or from_sdist):
        return ""
    if tag is None:
        tag = "cu" + torch.version.cuda.replace(".", "") if with_cuda else "cpu"
    return "" if tag.lower() in ("", "none") else "+" + tag


def _cxx_std() -> str:
    """The C++ standard the installed torch headers require (C++20 from torch 2.14 on)."""
    from torch.utils.cpp_extension import include_paths

    for inc in include_paths():
        header = os.path.join(inc, "ATen", "ATen.h")
        if os.path.exists(header):
            with open(header) as f:
                if "202002L" in f.read():
                    return "-std=c++20"
            break
    return "-std=c++17"


def _extension():
    debug = os.environ.get("TRAINOPS_DEBUG", "0") == "1"
    with_cuda = _want_cuda()
    stable = _want_stable_abi()
    torch_version = torch.__version__.split("+")[0]
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS) if with_cuda else ""
    if with_cuda:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    defines = [
        f'-DTRAINOPS_TORCH_VERSION="{torch_version}"',
        # ';' separates build_info's fields: list the archs with spaces.
        f'-DTRAINOPS_CUDA_ARCHS="{archs.replace(";", " ")}"',
        f'-DTRAINOPS_CUDA_VERSION="{torch.version.cuda if with_cuda else ""}"',
        f"-DPy_LIMITED_API={PY_LIMITED_API}",
    ]
    if stable:
        major, minor = STABLE_ABI_MIN_TORCH
        defines += ["-DTRAINOPS_STABLE_ABI=1", f"-DTORCH_TARGET_VERSION=0x{major:02x}{minor:02x}000000000000"]
        if with_cuda:
            defines.append("-DUSE_CUDA")  # declares the CUDA part of the stable C shim
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -ffp-contract=off: no ISA may fuse a multiply-add that another does not,
    # so every CPU ISA (and the GPU, with --fmad=false) rounds identically.
    # -fno-math-errno: sqrt compiles to the (correctly rounded) instruction and
    # vectorises; errno is the only thing it changes, and nothing reads it.
    std = _cxx_std()
    # -fvisibility=hidden: the module exports PyInit__C only, so two builds
    # (or two extensions) loaded into one process never interpose symbols.
    cxx = opt + [std, "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno", "-Wno-psabi", "-fvisibility=hidden"] + defines
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    include_dirs = [os.path.join(ROOT, "csrc"), os.path.join(ROOT, "csrc", "include")]
    kwargs = dict(
        name="trainops._C",
        include_dirs=include_dirs,
        extra_link_args=["-fopenmp", "-ldl"],
        py_limited_api=True,
    )
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = opt + [std, "--fmad=false", "-lineinfo", "--expt-relaxed-constexpr", "-Xcompiler=-fvisibility=hidden"] + defines
        include_dirs += _nvidia_wheel_includes()
    meta = {
        "torch": torch_version,
        "abi": "stable" if stable else "aten",
        # The oldest torch the binary loads under (aten: exactly `torch`).
        "min_torch": ".".join(map(str, STABLE_ABI_MIN_TORCH)) if stable else torch_version,
        "cuda": torch.version.cuda if with_cuda else None,
        "cuda_archs": archs,
        "debug": debug,
        "local_version": _local_version(with_cuda),
        # What the binary was built from (trainops/_source_digest.py).
        "sources": runpy.run_path(os.path.join(ROOT, "trainops", "_source_digest.py"))["source_digest"](ROOT),
    }
    if with_cuda:
        return CUDAExtension(sources=sources, extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs), meta
    return CppExtension(sources=sources, extra_compile_args={"cxx": cxx}, **kwargs), meta


def _write_build_meta(meta: dict) -> None:
    # Read by `import trainops` *before* loading the binary, to refuse an
    # extension built against another torch with a clear message.
    with open(os.path.join(ROOT, "trainops", "_build_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


ext, meta = _extension()
# Only when this invocation builds the binary: `setup.py sdist`, egg_info or
# dist_info must not describe a binary they did not build.
_BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel", "bdist_egg"}
if _BUILD_COMMANDS.intersection(sys.argv):
    _write_build_meta(meta)

setup(
    version=_version() + meta["local_version"],
    # stable ABI: every torch from min_torch on; aten: the torch it was built against.
    install_requires=[f"torch>={meta['min_torch']}" if meta["abi"] == "stable" else f"torch=={meta['torch']}"],
    packages=find_packages(include=["trainops", "trainops.*"]),
    package_data={"trainops": ["_build_meta.json"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
