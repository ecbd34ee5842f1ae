#!/usr/bin/env bash
# Build a trainops wheel against one torch, install it into a fresh venv that
# has another torch, and run the smoke subset of the tests from outside the
# source tree (so that `import trainops` can only find the installed wheel).
#
#   scripts/wheel_check.sh BUILD_VENV WORKDIR TARGET_TORCH [TARGET_TORCH ...]
#   scripts/wheel_check.sh --fresh TORCH WORKDIR
#
# BUILD_VENV    a venv with the build torch, setuptools, wheel and ninja
# WORKDIR       scratch directory (deleted first); the wheel is left in
#               WORKDIR/dist
# TARGET_TORCH  pip requirement of a torch to install the wheel next to, e.g.
#               torch==2.14.1; one fresh venv and one smoke run per target.
#               Or the path of an existing venv with that torch, pytest,
#               pytest-xdist, numpy, scipy and expecttest (the CUDA venv that
#               CI has made already: one install of torch fewer); the wheel
#               replaces any trainops there, and is uninstalled afterwards
# --fresh TORCH one fresh venv with TORCH, the build's and the tests' needs:
#               the wheel is built there and smoke-tested there (for a torch
#               older than the stable ABI, whose aten build serves only the
#               torch it was built against; one download of torch, not two)
#
# Environment: TRAINOPS_CUDA (default 0: a +cpu wheel), TORCH_CUDA_ARCH_LIST,
# MAX_JOBS, as for any build (see setup.py); PYTEST_N (default 2), the smoke
# run's pytest worker processes (0: one process). SDIST_CHECK=1 then also builds the
# sdist and installs it from source into the last target's venv (torch plus
# setuptools and wheel: the build needs nothing else) and checks it loads; with
# the oldest supported torch last, that also compiles against its headers.
set -euo pipefail
workers=(-n "${PYTEST_N:-2}")  # pytest-xdist processes of every pytest run below
start=$SECONDS
# A step's heading with the seconds since the start: where CI's time goes.
step() { echo "== [$((SECONDS - start))s] $*"; }
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then
  echo "usage: $0 BUILD_VENV WORKDIR TARGET_TORCH [TARGET_TORCH ...]" >&2
  echo "       $0 --fresh TORCH WORKDIR" >&2
  exit 2
fi
if [ "$1" = "--fresh" ]; then
  work=$3
  rm -rf "$work" && mkdir -p "$work/src" "$work/dist" "$work/smoke"
  work=$(cd "$work" && pwd)
  step "fresh venv with $2, the build's and the tests' needs"
  python3 -m venv "$work/venv0"
  "$work/venv0/bin/pip" install -q --upgrade pip
  "$work/venv0/bin/pip" install -q --no-cache-dir "$2" setuptools wheel ninja pytest pytest-xdist numpy scipy expecttest
  build_venv=$work/venv0
  targets=(same)
else
  build_venv=$(cd "$1" && pwd)
  work=$2
  shift 2
  targets=("$@")
  rm -rf "$work" && mkdir -p "$work/src" "$work/dist" "$work/smoke"
  work=$(cd "$work" && pwd)
fi

step "build the wheel against $("$build_venv/bin/python" -c 'import torch; print(torch.__version__)')"
# From a copy of the tree: the build writes trainops/_build_meta.json and
# build/, which must not disturb the checkout's own build.
(cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$work/src"
(cd "$work/src" && TRAINOPS_CUDA=${TRAINOPS_CUDA:-0} "$build_venv/bin/python" -m pip wheel -q \
  --no-build-isolation --no-deps -w "$work/dist" .)
wheel=$(ls "$work"/dist/trainops-*.whl)
echo "   $(basename "$wheel")"
case "$(basename "$wheel")" in
  *-cp310-abi3-*) ;;
  *) echo "not an abi3 wheel: $wheel" >&2; exit 1 ;;
esac

cp -r "$root/tests" "$work/smoke/tests"
unset PYTHONPATH

same_sources() {  # same_sources VENV: the installed package was built from this tree
  (cd "$work/smoke" && "$1/bin/python" - "$work/src" <<'PY'
import filecmp, json, os, runpy, sys, trainops, torch
where, root = os.path.dirname(trainops.__file__), sys.argv[1]
assert "site-packages" in where, f"trainops imported from {where}, not from the installed wheel"
tree = os.path.join(root, "trainops")
names = sorted(n for n in os.listdir(tree) if n.endswith(".py"))
installed = sorted(n for n in os.listdir(where) if n.endswith(".py"))
_, differ, missing = filecmp.cmpfiles(tree, where, names, shallow=False)
extra = sorted(set(installed) - set(names))
assert not (differ or missing or extra), f"installed Python files differ {differ}, missing {missing}, extra {extra}"
# The binary: the build records the digest of the sources it compiled.
with open(os.path.join(where, "_build_meta.json")) as f:
    built = json.load(f).get("sources")
digest = runpy.run_path(os.path.join(tree, "_source_digest.py"))["source_digest"](root)
assert built == digest, f"installed build is of sources {built}, this tree is {digest}: a stale (cached?) build"
print(f"   trainops from {where}, built from this tree (sources {digest}); torch {torch.__version__}")
PY
  )
}

smoke() {  # smoke VENV: the installed wheel, from outside the source tree
  same_sources "$1"
  (cd "$work/smoke" && "$1/bin/python" -c \
    "import trainops; assert trainops._extension.LOADED, trainops._extension.LOAD_ERROR")
  (cd "$work/smoke" && "$1/bin/trainops" info)
  (cd "$work/smoke" && TRAINOPS_REQUIRE_EXTENSION=1 "$1/bin/python" -m pytest -q -p no:cacheprovider \
    -m "not slow and not numerics" "${workers[@]}" tests/test_build.py tests/test_clip.py tests/test_init.py)
}

n=0
for target_torch in "${targets[@]}"; do
  n=$((n + 1))
  fresh=1
  if [ "$target_torch" = same ]; then
    venv=$build_venv
    target_torch=$("$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__)')
    step "the wheel, in the venv it was built in ($target_torch)"
  elif [ -x "$target_torch/bin/python" ]; then
    venv=$(cd "$target_torch" && pwd)
    fresh=0
    target_torch=$("$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__)')
    step "the existing venv $venv ($target_torch), then the wheel"
  else
    venv="$work/venv$n"
    step "fresh venv with $target_torch, then the wheel"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    # Only torch and the test runner's needs (numpy/scipy/expecttest: the
    # distribution tests and opcheck).
    # --no-cache-dir: the venv is thrown away, and a CUDA torch from PyPI would
    # leave ~3 GB of wheels in pip's cache.
    "$venv/bin/pip" install -q --no-cache-dir "$target_torch" pytest pytest-xdist numpy scipy expecttest
  fi
  "$venv/bin/pip" install -q --no-deps --force-reinstall "$wheel"
  "$venv/bin/pip" check
  step "smoke subset under $target_torch, from outside the source tree"
  smoke "$venv"
  if [ "$fresh" = 0 ]; then
    "$venv/bin/pip" uninstall -q -y trainops
  # A CUDA build of torch takes ~5 GB: keep only the venv the sdist check uses.
  elif [ "$n" -lt "${#targets[@]}" ] || [ "${SDIST_CHECK:-0}" != 1 ]; then
    rm -rf "$venv"
  fi
done

if [ "${SDIST_CHECK:-0}" = 1 ]; then
  step "the sdist builds from source with only $target_torch (+ setuptools, wheel) and a compiler"
  (cd "$work/src" && "$build_venv/bin/python" setup.py -q sdist -d "$work/dist")
  sdist=$(ls "$work"/dist/trainops-*.tar.gz)
  echo "   $(basename "$sdist")"
  "$venv/bin/pip" uninstall -q -y trainops
  "$venv/bin/pip" install -q setuptools wheel
  # By name from a package directory, as from an index: pip then also checks
  # that the version the build reports is the sdist's. --no-cache-dir: pip
  # caches the wheel it builds from an sdist under the sdist's URL, and this
  # path and version are the same in every run, so a cached wheel of older
  # sources would be installed instead of building this one.
  version=$(basename "$sdist" .tar.gz); version=${version#trainops-}
  (cd "$work/smoke" && TRAINOPS_CUDA=0 "$venv/bin/pip" install -q --no-cache-dir --no-build-isolation --no-deps \
    --no-index --find-links "$work/dist" --no-binary trainops "trainops==$version")
  same_sources "$venv"
  (cd "$work/smoke" && TRAINOPS_REQUIRE_EXTENSION=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    "${workers[@]}" tests/test_build.py)
fi
if [ "$fresh" = 1 ]; then rm -rf "$venv"; fi
step "done"
