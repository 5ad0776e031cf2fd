# DANNet Edge: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY := .venv/bin/python
JOBS ?= 2

.PHONY: setup demo test test-python test-cmake trt-bindings gpu-check clean

setup:
	scripts/setup.sh

demo: setup
	$(PY) -m benchmarks.demo

# `make test` records a failed preparation (PyPI down) for tests/test_tensorrt_api.py to report, and goes on
test: TRT_BINDINGS_FLAGS = --keep-going
test: setup trt-bindings test-cmake test-python

# the real TensorRT Python bindings (10.3, newest 10.x, newest 11.x) and the CUDA extras' resolution, from PyPI
trt-bindings:
	$(PY) scripts/trt_bindings.py $(TRT_BINDINGS_FLAGS)

# on a machine with an NVIDIA GPU: everything GPU-only, one report in gpu-check-report/ (scripts/gpu_check.py)
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) scripts/gpu_check.py

# one worker per job, a test file per worker at a time (its module fixtures built once); one torch thread each;
# the 15 slowest tests listed at the end, for keeping the suite within its 15 minutes
test-python:
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile --durations 15

test-cmake:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
	cmake --build build -j $(JOBS)
	ctest --test-dir build --output-on-failure -j $(JOBS)

clean:
	rm -rf build
