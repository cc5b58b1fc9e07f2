# Two entry points: `make run` (install and run the demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test chaos lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo wraps a shell command on the embedded default store (SQLite under
# $$XDG_STATE_HOME/scheduler/, else ~/.local/state/scheduler/). `reset` first so that a second
# `make run` shows the runs again instead of finding the job already finished.
run: install
	$(BIN)/scheduler reset --job-id demo
	$(BIN)/scheduler run --job-id demo --every 2s --max-runs 3 -- echo "hello from scheduler"
	$(BIN)/scheduler status --job-id demo

LINT_PATHS := $(wildcard scheduler tests integration_tests examples benchmarks)

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests

test: install
	bash .ci/ensure-server.sh
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not chaos"

chaos: install
	bash .ci/ensure-server.sh
	$(BIN)/pytest -q -m chaos

bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
