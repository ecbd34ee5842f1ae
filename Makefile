# Newcomer's entry points (see README):
#   make bench   set up .venv, build trainops, run `trainops bench` (the main job)
#   make test    set up .venv, build trainops, run pytest and the CMake/ctest build
#   make wheel   build the wheel for this machine into dist/ (see README, "Wheels")
# CI (.ci/run) runs `make test`, `make cuda-check`, `make wheel-check` and
# `make oldest-torch-check`.
#
# TORCH picks the torch to install (default: the CPU build on this machine's
# disk); e.g. `make test TORCH=torch==2.14.1`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_CUDA ?= torch==2.14.1
TORCH_MIN ?= torch==2.10.0
TORCH_OLDEST ?= torch==2.6.0
VENV ?= .venv
VENV_CUDA ?= .venv-cuda
MAX_JOBS ?= 2
# pytest worker processes (pytest-xdist); 0 runs the tests in one process.
PYTEST_N ?= 2
PIP_DEPS = numpy scipy pytest pytest-xdist pytest-benchmark expecttest ninja setuptools wheel cmake tensorboard matplotlib
BENCH_ARGS ?=

export MAX_JOBS PYTEST_N
# Recipes fail on the first failing command of a pipeline, too.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# A copy of the working tree (tracked and untracked-but-not-ignored files) into $(1).
copy_tree = git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(1)

.PHONY: venv build bench test test-python test-cpp cuda-check cuda-variant-check wheel wheel-check oldest-torch-check gpu-wheels clean

# The venvs depend on this file: a change to what they install (e.g. a new
# test dependency) reaches an existing venv too (pip skips what is there).
$(VENV)/.ready: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH)" $(PIP_DEPS)
	touch $@

venv: $(VENV)/.ready

build: venv
	$(VENV)/bin/pip install -q --no-build-isolation --no-deps -e .

bench: build
	$(VENV)/bin/trainops info
	$(VENV)/bin/trainops bench $(BENCH_ARGS)

test-python: build
	TRAINOPS_REQUIRE_EXTENSION=1 $(VENV)/bin/python -m pytest -q -n $(PYTEST_N) tests

test-cpp: venv
	$(VENV)/bin/cmake -S . -B build-cmake -DPython3_EXECUTABLE=$(abspath $(VENV))/bin/python \
	  -DCMAKE_PREFIX_PATH="$$($(VENV)/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	$(VENV)/bin/cmake --build build-cmake -j $(MAX_JOBS)
	$(VENV)/bin/ctest --test-dir build-cmake --output-on-failure

test: test-python test-cpp

# Compile, link and load the CUDA kernels against a CUDA build of torch; no GPU
# needed. Built in a copy of the tree so the CPU build above is left alone.
$(VENV_CUDA)/.ready: Makefile
	$(PYTHON) -m venv $(VENV_CUDA)
	$(VENV_CUDA)/bin/pip install -q --upgrade pip
	$(VENV_CUDA)/bin/pip install -q "$(TORCH_CUDA)" numpy scipy pytest pytest-xdist ninja setuptools wheel expecttest
	touch $@

# The CUDA wheel (+cu130, stable ABI) is built and installed into the CUDA
# venv; the build and load checks run from outside the source tree. They read
# the kernels' machine code with cuobjdump (tests/test_cuda_build.py), and
# benchmarks/sass_counts.py prints the init transforms' instruction counts.
cuda-check: $(VENV_CUDA)/.ready
	rm -rf build/cuda-src build/cuda-dist build/cuda-tests && mkdir -p build/cuda-src build/cuda-dist build/cuda-tests
	$(call copy_tree,build/cuda-src)
	cd build/cuda-src && TRAINOPS_CUDA=1 $(abspath $(VENV_CUDA))/bin/python -m pip wheel -q --no-build-isolation --no-deps -w ../cuda-dist .
	$(VENV_CUDA)/bin/pip install -q --no-deps --force-reinstall build/cuda-dist/trainops-*+cu*.whl
	cp -r tests build/cuda-tests/tests
	cd build/cuda-tests && env -u PYTHONPATH $(abspath $(VENV_CUDA))/bin/python -c \
	  "import trainops, sys; assert 'site-packages' in trainops.__file__, trainops.__file__; print(trainops.__file__)"
	cd build/cuda-tests && env -u PYTHONPATH TRAINOPS_REQUIRE_EXTENSION=1 TRAINOPS_REQUIRE_CUOBJDUMP=1 $(abspath $(VENV_CUDA))/bin/python -m pytest -q -p no:cacheprovider tests/test_build.py tests/test_cuda_build.py
	$(VENV_CUDA)/bin/python benchmarks/sass_counts.py

# The TRAINOPS_CUDA_FUSED_FINALIZE variant of csrc/cuda/clip.cu (timed against
# the default on a GPU by benchmarks/cuda_variants.sh): built and its machine
# code checked, no GPU needed. Not part of CI: with it in cuda-check, CI took
# 39 min 28 s on the sixteenth session's slower 2-core host (limit: 40).
cuda-variant-check: $(VENV_CUDA)/.ready
	rm -rf build/cuda-fused && mkdir -p build/cuda-fused
	$(call copy_tree,build/cuda-fused)
	cd build/cuda-fused && TRAINOPS_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 NVCC_APPEND_FLAGS=-DTRAINOPS_CUDA_FUSED_FINALIZE=1 \
	  $(abspath $(VENV_CUDA))/bin/python setup.py -q build_ext --inplace
	cd build/cuda-fused && env -u PYTHONPATH TRAINOPS_REQUIRE_EXTENSION=1 TRAINOPS_REQUIRE_CUOBJDUMP=1 TRAINOPS_EXPECT_FUSED_FINALIZE=1 \
	  $(abspath $(VENV_CUDA))/bin/python -m pytest -q -p no:cacheprovider tests/test_cuda_build.py

# The wheel for this machine's torch (CPU kernels; TRAINOPS_CUDA=1 and
# TORCH_CUDA_ARCH_LIST for a CUDA wheel, see README).
wheel: venv
	rm -rf build/wheel-src dist && mkdir -p build/wheel-src dist
	$(call copy_tree,build/wheel-src)
	cd build/wheel-src && $(abspath $(VENV))/bin/python -m pip wheel --no-build-isolation --no-deps -w $(abspath dist) .
	cd build/wheel-src && $(abspath $(VENV))/bin/python setup.py -q sdist -d $(abspath dist)
	ls dist

# One wheel, several torch versions, both ways: a wheel built against $(TORCH)
# runs the smoke tests under the newer $(TORCH_CUDA) (in $(VENV_CUDA), which has
# it already; the wheel is uninstalled from there afterwards); a wheel built
# against $(TORCH_CUDA), the newest, runs them in a fresh venv with the oldest
# torch the stable ABI build supports, $(TORCH_MIN), the widest span back; then
# the sdist is built from source in that venv. The spans between these are
# not run again (benchmarks/RESULTS.md: CI's time, twenty-first session).
wheel-check: venv $(VENV_CUDA)/.ready
	scripts/wheel_check.sh $(VENV) build/wheel-check-new $(VENV_CUDA)
	SDIST_CHECK=1 scripts/wheel_check.sh $(VENV_CUDA) build/wheel-check-old "$(TORCH_MIN)"

# The oldest torch the package supports, $(TORCH_OLDEST): older than the stable
# ABI, so setup.py builds the aten flavour, which serves only the torch it was
# built against. Built, installed and smoke-tested in one fresh venv.
oldest-torch-check:
	scripts/wheel_check.sh --fresh "$(TORCH_OLDEST)" build/wheel-check-oldest

# pytest and its dependencies as wheels for Python 3.12, for benchmarks/gpu_check.sh
# on a GPU machine that has neither pytest nor internet (carry .gpu_wheels there).
gpu-wheels:
	rm -rf .gpu_wheels && python3 -m pip download -q --only-binary=:all: --python-version 3.12 -d .gpu_wheels pytest numpy
	ls .gpu_wheels

clean:
	rm -rf build build-cmake trainops/_C*.so trainops/_build_meta.json
