# longtail: `make demo` sets everything up and runs the whole pipeline; `make test` runs the suite.
# Needs only python3 and make: uv is installed into .tools/ when it is not on PATH.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
RUN := $(UV) run --frozen

.PHONY: demo test test-fast bench lint format repro clean help

help:
	@echo "make demo   - install and run the whole pipeline on the platform world, then the bank world"
	@echo "make test   - run the test suite"
	@echo "make bench  - run the benchmarks"
	@echo "make lint   - ruff check, format check and the import contracts (lint-imports)"
	@echo "make repro  - rebuild every stage with dvc repro"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

demo: .venv/.synced
	$(RUN) longtail demo
	$(RUN) longtail demo --params examples/bank-world/params.yaml

test: .venv/.synced
	$(RUN) pytest

test-fast: .venv/.synced
	$(RUN) pytest -m "not slow"

bench: .venv/.synced
	$(RUN) python benchmarks/run_all.py

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports

format: .venv/.synced
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

repro: .venv/.synced
	$(RUN) dvc repro

clean:
	rm -rf data/raw data/truth data/validated data/quarantine data/features data/models \
	  data/reports data/registry data/scores data/bank mlflow.db mlflow-bank.db mlartifacts
