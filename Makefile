# Two entry points: `make run` (install and run the demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The demo gets a virtualenv of its own with the runtime dependencies only (no dev toolchain).
DEMO_VENV ?= .venv-demo
DEMO_BIN := $(DEMO_VENV)/bin
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: install run test chaos lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_BIN)/pip install --quiet -e .
	touch $(DEMO_STAMP)

# The demo wraps a shell command on the embedded default store (SQLite under
# $$XDG_STATE_HOME/scheduler/, else ~/.local/state/scheduler/). `reset` first so that a second
# `make run` shows the runs again instead of finding the job already finished.
run: $(DEMO_STAMP)
	$(DEMO_BIN)/scheduler reset --job-id demo
	$(DEMO_BIN)/scheduler run --job-id demo --every 2s --max-runs 3 -- echo "hello from scheduler"
	$(DEMO_BIN)/scheduler status --job-id demo

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

# About a quarter of an hour. APScheduler 4 (a pre-release that cannot share a virtualenv with
# APScheduler 3) is installed on first use into benchmarks/.venv-aps4.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks --profile

clean:
	rm -rf $(VENV) $(DEMO_VENV) .mypy_cache .ruff_cache .pytest_cache
