# The two commands of the README: `make demo` and `make test` (each sets itself up first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

# torch/torchvision come from the ranges in pyproject.toml (torch 2.14.1 satisfies them).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e ".[dev,onnx]"
	touch $@

demo: install
	$(BIN)/nas demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_supernet_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
