"""``trainops info``: what this install is and what it was built with."""

from __future__ import annotations

import argparse
import platform

import torch

from . import _extension
from .version import __version__


def info_lines() -> list[str]:
    """Human-readable facts about trainops, torch and the compiled backends."""
    # The variant tag (+cpu, +cu130) of the binary that is loaded.
    local = (_extension.BUILD_META or {}).get("local_version", "")
    lines = [
        f"trainops        {__version__}{local}",
        f"torch           {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"python          {platform.python_version()} ({platform.machine()})",
    ]
    if not _extension.LOADED:
        lines.append(f"extension       NOT LOADED: {_extension.LOAD_ERROR}")
        lines.append(f"                {_extension.REBUILD_HINT}; until then ops fall back to pure PyTorch")
        return lines
    b = _extension.build_info()
    meta = _extension.BUILD_META or {}
    if b.get("abi") == "stable":
        abi = f"stable ABI: loads under torch >= {meta.get('min_torch', '2.10')}"
    else:
        abi = f"version-specific ABI: loads only under torch {b.get('torch')}"
    lines += [
        f"built against   torch {b.get('torch')} ({abi}), from sources {meta.get('sources', 'unrecorded')}",
        f"CPU kernels     compiled for {b.get('cpu_isas')}; in use: {b.get('cpu_isa')}",
    ]
    if b.get("cuda"):
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible"
        lines.append(f"CUDA kernels    CUDA {b.get('cuda')}, archs {b.get('cuda_archs')} ({gpu})")
    else:
        lines.append("CUDA kernels    not compiled")
    lines.append(f"kernel devices  {', '.join(sorted(_extension.CLIP_DEVICES)) or 'none'}")
    lines.append(f"threads         {torch.get_num_threads()}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("\n".join(info_lines()))
    return 0
