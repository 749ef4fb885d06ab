# dsq: `make demo` runs the main job on the embedded default (SQLite); `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv deps demo test test-exhaustive contract bench-kernels bench-quality bench-memory llama-tools kernels-aot load audit clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml scripts/build-llama-wheel.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# llama-cpp-python builds llama.cpp from source (CPU only, AMX off, ~4 minutes), cached by version and flags.
	$(PY) -m pip install -q --force-reinstall --no-deps "$$(PYTHON=$(PY) scripts/build-llama-wheel.sh)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

deps:
	scripts/install-system-deps.sh

demo: venv deps
	$(VENV)/bin/dsq demo

# Three test processes, a whole file each (most end-to-end tests wait on workers and servers, so a third
# process fills the two cores); the slowest tests are listed at the end, to keep CI under 30 minutes.
test: venv deps
	$(VENV)/bin/pytest -n 3 --dist loadfile --durations=25 -m "not exhaustive"

# The byte-identity matrix of every llama.cpp mix on deepseek32/deepseek4 (`make test` runs four of them).
test-exhaustive: venv deps
	$(VENV)/bin/pytest -n 3 --dist loadfile -m exhaustive

# The OpenAPI schema as a contract: Schemathesis, all checks, against gunicorn (also part of `make test`).
contract: venv deps
	$(VENV)/bin/pytest tests/registry/api/test_schema_contract.py

bench-kernels: venv
	$(PY) -m benchmarks.kernels.bench

# The trained tiny DeepSeek-V3 MoE in every mix, with and without an imatrix, evaluated on its validation split
# of CPython's pydoc topics: the README's quality table (`--model smollm2` for the dense SmolLM2-135M table).
bench-quality: venv
	$(PY) -m quant.eval.bench_quality

bench-memory: venv
	$(PY) -m quant.bench_memory

# llama.cpp's own tools (llama-perplexity, llama-imatrix, llama-quantize) from the vendored source.
llama-tools: venv
	scripts/build-llama-tools.sh

# The compiled CPU kernels as AOTInductor packages (kernels.aot), once per torch version, kernels source and CPU,
# into ~/.cache/dsq/kernels: each process then loads them instead of tracing them with dynamo (about 20 s).
# (A process that misses one builds it on first use.)
kernels-aot: venv
	$(PY) -m kernels.aot_build build

# Load test: gunicorn on loopback against a throwaway PostgreSQL; p50/p99 per concurrency level.
load: venv deps
	$(PY) scripts/load_test.py

# Dependency audit: needs PyPI's or OSV's vulnerability service (not reachable from the CI sandbox).
audit: venv
	$(PY) -m pip install -q pip-audit==2.10.1
	$(VENV)/bin/pip-audit --skip-editable --strict --progress-spinner off

clean:
	rm -rf var/demo var/storage
