# One entry point for newcomers and CI. Every target is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
LIVEKIT_VERSION := v1.13.5
APT_PACKAGES := chromium espeak-ng sox postgresql redis-server

# The first Python >= 3.12 found: on PATH, then in pyenv.
BOOTSTRAP_PYTHON := $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3 $$HOME/.pyenv/versions/3.12*/bin/python3 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: help setup system-packages venv livekit-server js demo demo-banner test suite lint docs wheel clean bench bench-tools

help:
	@echo "make demo   run the portal with a live demo call (make demo-banner: its logins again)"
	@echo "make test   run the whole test suite (and the linters)"
	@echo "make docs   build the documentation site (mkdocs --strict) into var/docs/"
	@echo "make setup  install everything (idempotent); make lint; make wheel"

setup: system-packages venv livekit-server js

system-packages:
	@missing=""; for cmd in chromium espeak-ng sox redis-server; do command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@# Node.js builds the SDK bundles; only when there is none (a Node.js of another origin stays).
	@if ! command -v npm >/dev/null; then \
		echo "Installing Debian packages: nodejs npm"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(BOOTSTRAP_PYTHON)" || { echo "Python 3.12+ is required (python3.12 on PATH or in pyenv)."; exit 1; }
	test -x $(PY) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# A real LiveKit server, built from source with Go unless one is on PATH.
livekit-server: $(TOOLS)/livekit-server

$(TOOLS)/livekit-server:
	@mkdir -p $(TOOLS)
	@if command -v livekit-server >/dev/null; then ln -sf "$$(command -v livekit-server)" $@; \
	else echo "Building livekit-server $(LIVEKIT_VERSION) with Go (cached after the first time)"; \
		GOBIN=$(CURDIR)/$(TOOLS) go install github.com/livekit/livekit-server/cmd/server@$(LIVEKIT_VERSION) && \
		mv $(TOOLS)/server $@; fi

js:
	@if [ -f js/package.json ]; then $(MAKE) -s -C js build; fi

demo: setup
	$(PY) manage.py run_demo

# The running demo's banner again (logins, keys): run_demo keeps it in var/demo/.
demo-banner:
	@cat var/demo/banner.txt 2>/dev/null || echo "No demo banner yet: start the demo with make demo."

# Test modules run in parallel (pytest-xdist, one module per worker at a time: see
# tests/conftest.py). Most of the suite waits on real servers, calls and browsers, so
# more workers than cores pays; TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 3

# The linters (mypy takes half a minute from a clean clone) run beside the tests; either
# failing fails make test.
test: setup
	$(MAKE) -s -j2 lint suite

suite: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=15

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy anyreach_listen config portal demo tests bench

# The documentation site (docs/, mkdocs.yml) into var/docs/. --strict: a broken link or
# anchor, or a page missing from the nav, fails the build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Benchmarks, never part of `make test`: bench/run.py runs bench/bench_*.py and
# writes BENCHMARKS.md. QUICK=1 makes it a smoke run (var/bench/BENCHMARKS.quick.md).
bench: setup bench-tools
	$(PY) bench/run.py $(if $(QUICK),--quick)

# wrk (Debian) drives the HTTP load.
bench-tools:
	@command -v wrk >/dev/null || { echo "Installing Debian package: wrk"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }

# The sdist, then the wheel built from it. setup.py's hook builds the JS bundles with
# the npm toolchain pinned in js/package-lock.json: Node.js 18+ and npm, no `make setup`.
wheel: venv
	rm -rf dist && $(PY) -m build -o dist . >/dev/null && ls dist

clean:
	rm -rf $(VENV) .tools dist build js/node_modules
