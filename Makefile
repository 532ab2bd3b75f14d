# CoriSync — the two commands that matter: `make dev` (platform + demo data + Dagster UI) and `make test`.
# Everything else is a building block of those two. Needs: Python 3.11+, and apt for missing system packages.

SHELL := /bin/bash
UV_VERSION := 0.13.8
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: dev test install system-deps test-tools lint bench stack-up stack-down stack-status clean

## make dev: install everything, start the local stack, seed demo data, stream changes, Dagster UI on :3000
dev: install
	$(UV) run corisync dev --port 3000

## make test: install everything (incl. test tools), run lint and the whole suite (fixtures start services)
test: install test-tools
	$(UV) run ruff check .
	$(UV) run pytest $(PYTEST_ARGS)

install: system-deps
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)" \
		|| $(PYTHON) -m pip install -q --user "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python $(PYTHON)

# Java 17 (Debezium's JVM) and PostgreSQL 15 server binaries (the project-owned cluster), from apt if missing.
system-deps:
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	if [ -n "$$missing" ]; then \
		echo "system-deps: installing$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Tools only the tests need, each isolated from the project venv: compose/terraform/checkov (deploy checks),
# Chromium (UI screenshot), the BigQuery emulator's own venv.
test-tools: install
	bash tests/deploy/install_tools.sh
	bash tests/ui/install_chromium.sh
	bash tests/bigquery/install_emulator.sh

lint:
	$(UV) run ruff check .

bench: install
	$(UV) run python bench/cdc_landing.py
	$(UV) run python bench/definitions_load.py

stack-up: install
	$(UV) run corisync stack up
stack-down:
	$(UV) run corisync stack down
stack-status:
	$(UV) run corisync stack status

clean: stack-down
	rm -rf .corisync artifacts dbt_project/target dbt_project/logs
