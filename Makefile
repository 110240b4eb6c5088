# netobs developer tasks. `make demo` and `make test` work on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup services test test-fast lint docs format bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv with netobs installed (editable) and the dev tools

$(STAMP): pyproject.toml setup.py $(wildcard collectors/_native/*.c collectors/_native/*.h netobs/_native/*.c pipeline/_native/*.c)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

services: ## install the real services the tests use (Debian packages, Kafka jars); needs root
	bash scripts/install-services.sh

test: setup services ## set up everything and run the whole test suite
	$(VENV)/bin/pytest

test-fast: setup ## the fast tier only: no services installed or started, under two minutes
	$(VENV)/bin/pytest -m fast -q

lint: setup ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: setup ## regenerate docs/config.md and docs/metrics.md from the code
	$(PY) -m netobs_app.docs

format: setup ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup ## run every benchmark; one `bench: <name> <value> <unit>` line per figure
	$(PY) bench/run.py

demo: setup ## a live three-center bank sending sFlow and IPFIX into netobs; prints the flow explorer URL
	bash scripts/demo.sh

clean: ## remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
