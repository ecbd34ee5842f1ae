# Newcomer's entry points (see README):
#   make bench   set up .venv, build trainops, run `trainops bench` (the main job)
#   make test    set up .venv, build trainops, run pytest and the CMake/ctest build
# CI (.ci/run) runs `make test` and `make cuda-check`.
#
# TORCH picks the torch to install (default: the CPU build on this machine's
# disk); e.g. `make test TORCH=torch==2.14.1`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_CUDA ?= torch==2.14.1
VENV ?= .venv
VENV_CUDA ?= .venv-cuda
MAX_JOBS ?= 2
PIP_DEPS = numpy scipy pytest pytest-benchmark expecttest ninja setuptools wheel cmake tensorboard matplotlib
BENCH_ARGS ?=

export MAX_JOBS

.PHONY: venv build bench test test-python test-cpp cuda-check clean

$(VENV)/.ready:
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
	TRAINOPS_REQUIRE_EXTENSION=1 $(VENV)/bin/python -m pytest -q tests

test-cpp: venv
	$(VENV)/bin/cmake -S . -B build-cmake -DPython3_EXECUTABLE=$(abspath $(VENV))/bin/python \
	  -DCMAKE_PREFIX_PATH="$$($(VENV)/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	$(VENV)/bin/cmake --build build-cmake -j $(MAX_JOBS)
	$(VENV)/bin/ctest --test-dir build-cmake --output-on-failure

test: test-python test-cpp

# Compile, link and load the CUDA kernels against a CUDA build of torch; no GPU
# needed. Built in a copy of the tree so the CPU build above is left alone.
$(VENV_CUDA)/.ready:
	$(PYTHON) -m venv $(VENV_CUDA)
	$(VENV_CUDA)/bin/pip install -q --upgrade pip
	$(VENV_CUDA)/bin/pip install -q "$(TORCH_CUDA)" numpy pytest ninja setuptools wheel expecttest
	touch $@

cuda-check: $(VENV_CUDA)/.ready
	rm -rf build/cuda-src && mkdir -p build/cuda-src
	tar --exclude=./.venv* --exclude=./build --exclude=./build-cmake --exclude=./.git -cf - . | tar -xf - -C build/cuda-src
	rm -f build/cuda-src/trainops/_C*.so build/cuda-src/trainops/_build_meta.json
	cd build/cuda-src && TRAINOPS_CUDA=1 $(abspath $(VENV_CUDA))/bin/python setup.py -q build_ext --inplace
	cd build/cuda-src && TRAINOPS_REQUIRE_EXTENSION=1 $(abspath $(VENV_CUDA))/bin/python -m pytest -q tests/test_build.py tests/test_cuda_build.py

clean:
	rm -rf build build-cmake trainops/_C*.so trainops/_build_meta.json
