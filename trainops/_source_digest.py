"""The digest of the sources a build compiles and packages.

setup.py runs this file by path (importing trainops would need torch's import
and a built package) and writes the digest of the tree it builds from into
``_build_meta.json``; ``trainops info`` shows it. Run as a script,
``python trainops/_source_digest.py ROOT`` prints the digest of a checkout, so
that a check can tell whether an installed build was made from that tree
(scripts/wheel_check.sh: a wheel that pip cached from older sources has the
right version but another digest).

What counts: the C++/CUDA sources under ``csrc/`` and the Python files under
``trainops/`` (the files a source build needs and an sdist carries), by
relative path and content, plus ``setup.py``; not build outputs.
"""

from __future__ import annotations

import hashlib
import os
import sys

_SUFFIXES = (".py", ".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh", ".inc")


def source_digest(root: str) -> str:
    h = hashlib.sha256()
    files = []
    for top in ("csrc", "trainops"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            files += [os.path.join(dirpath, n) for n in filenames if n.endswith(_SUFFIXES)]
    files.append(os.path.join(root, "setup.py"))
    for path in sorted(files, key=lambda p: os.path.relpath(p, root).replace(os.sep, "/")):
        h.update(os.path.relpath(path, root).replace(os.sep, "/").encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()[:16]


if __name__ == "__main__":
    print(source_digest(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
