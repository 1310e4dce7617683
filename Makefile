# Two commands for a fresh machine: `make run` and `make test` (both set up .venv first).
SHELL := /bin/bash
PY ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install native run test test-fast lint format bench bench-faces bench-instructions clean

# The accounting hot path (keys, rate limits, usage recording) and the Responses API's
# translation compiled to C with mypyc where a C compiler is present: they run on every request
# (with a key; of the Responses face), and compiled they cost a third to half fewer
# instructions. Without a compiler the same modules run as Python (a warning says so). The
# compiled modules sit beside their sources; the tests refuse ones older than them.
NATIVE := src/ailb/ratelimit/local.py src/ailb/ratelimit/policy.py src/ailb/billing/usage.py \
	src/ailb/spool.py src/ailb/auth/authenticator.py src/ailb/auth/identity.py \
	src/ailb/api/responses/request.py src/ailb/api/responses/reply.py

install: $(VENV)/.installed $(VENV)/.native

$(UV):
	@echo "uv not found: installing it into .tools/ (a private venv, nothing system-wide)"
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# The build generates the gRPC modules from proto/ (hatch_build.py): a changed .proto reinstalls.
$(VENV)/.installed: pyproject.toml uv.lock hatch_build.py proto/generate.py $(wildcard proto/*/*.proto) | $(UV)
	$(UV) sync --locked
	@touch $@

native: $(VENV)/.native

$(VENV)/.native: $(VENV)/.installed $(NATIVE) Makefile
	@rm -f $(foreach m,$(NATIVE),$(basename $(m)).cpython-*.so)
	@mkdir -p build
	@# Each module's own .so only loads the shared one, so an unchanged one is copied with its
	@# old time: touched, they carry this build's, which the stale check compares.
	@if $(BIN)/mypyc $(NATIVE) > build/mypyc.log 2>&1; then \
		touch $(foreach m,$(NATIVE),$(basename $(m)).cpython-*.so); \
		echo "compiled with mypyc: $(NATIVE)"; \
	else \
		rm -f $(foreach m,$(NATIVE),$(basename $(m)).cpython-*.so); \
		echo "warning: mypyc could not compile the hot-path modules (see build/mypyc.log):" \
			"they run as Python, correct but slower"; \
	fi
	@touch $@

run: install  ## start the gateway (demo mode with the mock provider when nothing is configured)
	$(BIN)/ailb serve --demo

test: install  ## the whole test suite
	$(BIN)/pytest

test-fast: install  ## the quick loop (about a minute): no gateways, services or processes
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install  ## side-by-side benchmark against direct, Portkey and LiteLLM (needs ../shared)
	bench/run.sh
	bench/faces/run.sh

bench-faces: install  ## each inbound API's requests/s against chat's, in one run (needs ../shared)
	bench/faces/run.sh

bench-instructions: install  ## machine instructions per request by face (valgrind; needs ../shared)
	bench/instructions/run.sh

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache build
	find src -name '*.so' -delete
