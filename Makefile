# Two commands for a fresh machine: `make run` and `make test` (both set up .venv first).
SHELL := /bin/bash
PY ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format bench clean

install: $(VENV)/.installed

$(UV):
	@echo "uv not found: installing it into .tools/ (a private venv, nothing system-wide)"
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# The build generates the gRPC modules from proto/ (hatch_build.py): a changed .proto reinstalls.
$(VENV)/.installed: pyproject.toml uv.lock hatch_build.py proto/generate.py $(wildcard proto/*/*.proto) | $(UV)
	$(UV) sync --locked
	@touch $@

run: install  ## start the gateway (demo mode with the mock provider when nothing is configured)
	$(BIN)/ailb serve --demo

test: install  ## the whole test suite
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install  ## side-by-side benchmark against direct, Portkey and LiteLLM (needs ../shared)
	bench/run.sh

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
