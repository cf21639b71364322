# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv
# from requirements.lock (exact pins, hashes) with only Python 3.11 assumed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

# Sample-bank size for `make run` (override: make run CUSTOMERS=20000 DAYS=30).
CUSTOMERS ?= 1000
DAYS ?= 2
# Days of history before DAYS, loaded and built directly, for the churn model's labels.
HISTORY_DAYS ?= 300
START ?= 2026-01-01
SEED ?= 42

.PHONY: venv run test test-slow lint format bench lock clean docs

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

run: venv
	$(BIN)/crm warehouse start
	$(BIN)/crm demo --customers $(CUSTOMERS) --days $(DAYS) --history-days $(HISTORY_DAYS) --start $(START) --seed $(SEED)

test: venv
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25 tests

test-slow: venv
	$(BIN)/python -m pytest -m slow tests

lint: venv
	$(BIN)/ruff check include dags ml tests
	$(BIN)/ruff format --check include dags ml tests
	$(BIN)/crm dbt lint
	$(BIN)/sqlfluff lint dbt_project/tests

format: venv
	$(BIN)/ruff check --fix include dags ml tests
	$(BIN)/ruff format include dags ml tests

bench: venv
	$(BIN)/crm warehouse start
	$(BIN)/python -m crm.bench

# Re-resolve the exact pins after editing dependencies in pyproject.toml; the production
# image's lock follows the same pins (a test fails when the two drift apart).
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev -p 3.11 --generate-hashes -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml docker/requirements-image.in -c requirements.lock \
		-p 3.11 --python-platform linux --generate-hashes -o docker/requirements-image.lock

clean:
	-test -x $(BIN)/crm && $(BIN)/crm warehouse stop
	rm -rf var dbt_project/target dbt_project/logs .pytest_cache .ruff_cache
