"""The build and the import policy: build facts, `trainops info`, mismatched builds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import trainops
from trainops import _extension
from trainops.info import info_lines


def test_extension_loaded_and_build_info():
    assert _extension.LOADED, _extension.LOAD_ERROR
    info = _extension.build_info()
    assert info["abi"] == _extension.BUILD_META["abi"]
    running = _extension._version_tuple(torch.__version__.split("+")[0])
    if info["abi"] == "stable":
        assert running >= _extension._version_tuple(_extension.BUILD_META["min_torch"])
    else:
        assert info["torch"] == torch.__version__.split("+")[0]
    assert info["cpu_isa"] in info["cpu_isas"].split(",")
    assert "cpu" in _extension.CLIP_DEVICES


def test_info_lines_name_versions_and_backends():
    text = "\n".join(info_lines())
    assert trainops.__version__ in text
    assert torch.__version__ in text
    assert "CPU kernels" in text and "in use:" in text


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "trainops", "info"], capture_output=True, text=True, check=True)
    assert "built against" in out.stdout


def test_cli_output_into_a_closed_pipe_stops_quietly():
    """`trainops info | head -0`: the reader is gone before the first write."""
    proc = subprocess.Popen([sys.executable, "-m", "trainops", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    # Started with stdout closed (`trainops info >&-`): Python has no sys.stdout.
    out = subprocess.run(
        ["sh", "-c", 'exec "$0" -m trainops info >&-', sys.executable], capture_output=True, text=True
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr


STABLE = (_extension.BUILD_META or {}).get("abi") == "stable"


@pytest.mark.skipif(not STABLE, reason="the aten build links libtorch's C++ API by design")
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_stable_binary_uses_only_the_c_shim_of_libtorch():
    """What makes one binary load under every torch >= 2.10: it calls libtorch
    only through the stable C shim (aoti_torch_* / torch_*), never a C++ symbol
    of libtorch or c10, whose mangled names and layouts change between releases."""
    import trainops._C

    so = trainops._C.__file__
    out = subprocess.run(["nm", "-D", "--undefined-only", "-C", so], capture_output=True, text=True, check=True)
    cxx_torch = [line for line in out.stdout.splitlines() if re.search(r"\b(c10|at|torch|caffe2)::", line)]
    assert not cxx_torch, cxx_torch[:10]
    assert "torch_library_impl" in out.stdout


@pytest.mark.skipif(not STABLE, reason="only the stable-ABI binary loads under another torch")
def test_stable_binary_loads_whatever_torch_it_was_built_against(tmp_path):
    meta = dict(_extension.BUILD_META, torch="2.10.0")
    path = _copy_package_with_meta(tmp_path, meta)
    out = _run("import trainops; print(trainops._extension.LOADED)", path, require=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_stable_binary_refused_under_too_old_torch(tmp_path):
    path = _copy_package_with_meta(tmp_path, {"torch": "99.0.0", "abi": "stable", "min_torch": "99.0"})
    out = _run("import trainops", path, require=True)
    assert out.returncode != 0
    assert "needs torch >= 99.0" in out.stderr


def test_cuda_build_refused_under_a_torch_without_that_cuda(tmp_path):
    meta = {"torch": "2.13.0", "abi": "stable", "min_torch": "2.10", "cuda": "99.0", "cuda_archs": "9.0"}
    path = _copy_package_with_meta(tmp_path, meta)
    out = _run("import trainops", path, require=True)
    assert out.returncode != 0
    assert "built with CUDA 99.0" in out.stderr


def _copy_package_with_meta(tmp_path, meta: dict | None):
    pkg = os.path.dirname(trainops.__file__)
    dst = tmp_path / "trainops"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("__pycache__"))
    meta_file = dst / "_build_meta.json"
    if meta is None:
        meta_file.unlink()
    else:
        meta_file.write_text(json.dumps(meta))
    return tmp_path


def _run(code: str, path, require: bool):
    env = dict(os.environ, PYTHONPATH=str(path), TRAINOPS_REQUIRE_EXTENSION="1" if require else "0")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(path))


def test_mismatched_torch_warns_and_falls_back(tmp_path):
    path = _copy_package_with_meta(tmp_path, {"torch": "0.0.1", "cuda": None, "cuda_archs": ""})
    code = (
        "import warnings, torch\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import trainops\n"
        "    p = torch.nn.Parameter(torch.ones(4)); p.grad = torch.full((4,), 3.0)\n"
        "    t = trainops.clip_grad_norm_([p], 1.0)\n"
        "print(trainops._extension.LOADED, round(float(t), 4), round(float(p.grad[0]), 4))\n"
        "print('|'.join(str(x.message) for x in w))\n"
    )
    out = _run(code, path, require=False)
    assert out.returncode == 0, out.stderr
    first, warns = out.stdout.splitlines()[:2]
    assert first == "False 6.0 0.5"
    assert "built against torch 0.0.1" in warns and "pip install --no-build-isolation" in warns
    assert "Falling back to pure PyTorch" in warns
    # One warning for everything: the import's (the clip call adds none).
    assert sum("trainops" in w for w in warns.split("|")) == 1, warns


def test_mismatched_torch_refused_when_required(tmp_path):
    path = _copy_package_with_meta(tmp_path, {"torch": "0.0.1", "cuda": None, "cuda_archs": ""})
    out = _run("import trainops", path, require=True)
    assert out.returncode != 0
    assert "built against torch 0.0.1" in out.stderr


def test_missing_build_says_how_to_build(tmp_path):
    path = _copy_package_with_meta(tmp_path, None)
    out = _run("import trainops", path, require=True)
    assert out.returncode != 0
    assert "build record" in out.stderr and "pip install --no-build-isolation -e ." in out.stderr
    for binary in (path / "trainops").glob("_C*.so"):
        binary.unlink()
    out = _run("import trainops", path, require=True)
    assert out.returncode != 0
    assert "not built" in out.stderr and "pip install --no-build-isolation -e ." in out.stderr
