# DANNet Edge: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY := .venv/bin/python
JOBS ?= 2

.PHONY: setup demo test test-python test-cmake clean

setup:
	scripts/setup.sh

demo: setup
	$(PY) -m benchmarks.demo

test: setup test-cmake test-python

test-python:
	$(PY) -m pytest -q

test-cmake:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
	cmake --build build -j $(JOBS)
	ctest --test-dir build --output-on-failure

clean:
	rm -rf build
