"""Run pytest against a trainops binary built elsewhere (e.g. the CMake build).

    python tests/tools/run_with_library.py LIBRARY ABI -- PYTEST_ARGS...

Copies the Python package next to LIBRARY (as trainops/_C.abi3.so) into a
temporary directory, writes the _build_meta.json that setup.py would have
written for an ABI (stable or aten) build against the running torch, and runs
pytest with that copy first on sys.path, from outside the source tree. CTest
uses it to run the smoke tests on the CMake (aten) build, so that the
version-specific build is tested, not only compiled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    library, abi = sys.argv[1], sys.argv[2]
    pytest_args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    import torch

    torch_version = torch.__version__.split("+")[0]
    with tempfile.TemporaryDirectory() as tmp:
        pkg = os.path.join(tmp, "trainops")
        shutil.copytree(
            os.path.join(ROOT, "trainops"), pkg, ignore=shutil.ignore_patterns("__pycache__", "_C*.so", "_build_meta.json")
        )
        shutil.copy(library, os.path.join(pkg, "_C.abi3.so"))
        meta = {
            "torch": torch_version,
            "abi": abi,
            "min_torch": "2.10" if abi == "stable" else torch_version,
            "cuda": None,
            "cuda_archs": "",
            "local_version": "",
        }
        with open(os.path.join(pkg, "_build_meta.json"), "w") as f:
            json.dump(meta, f)
        shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(tmp, "tests"), ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, PYTHONPATH=tmp, TRAINOPS_REQUIRE_EXTENSION="1")
        code = "import trainops, sys; assert trainops.__file__.startswith(sys.argv[1]), trainops.__file__; print(trainops._extension.build_info())"
        subprocess.run([sys.executable, "-c", code, tmp], env=env, cwd=tmp, check=True)
        return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], env=env, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
