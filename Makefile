# Two entry points: `make run` (install and run the demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff check scheduler tests integration_tests examples benchmarks
	$(BIN)/ruff format --check scheduler tests integration_tests examples benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests

test: install
	bash .ci/ensure-server.sh
	$(BIN)/ruff check scheduler tests integration_tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
