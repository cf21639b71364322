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

.PHONY: venv chromium run test test-slow lint format bench lock clean docs

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# Chromium for the report-rendering test (tests/transform/test_report_render.py) and
# `crm report --png`: Debian bookworm's own Chromium, fetched with `apt-get download` and
# unpacked with `dpkg -x` into .venv/chromium/root (beside the venv: `make clean` keeps it).
# User space: no root, no system package installed; it runs with LD_LIBRARY_PATH on the
# unpacked libraries (crm.reporting.browser). The list is chromium plus the libraries a
# bookworm machine lacks; the ldd check below names any still missing.
CHROMIUM_DIR := $(VENV)/chromium
CHROMIUM_STAMP := $(CHROMIUM_DIR)/.installed
CHROMIUM_DEBS := chromium chromium-common libopenh264-7 libdouble-conversion3 libharfbuzz-subset0 \
	libpulse0 libflac12 libopus0 libxnvctrl0 libminizip1 libopenjp2-7 libogg0 libsndfile1 \
	libasyncns0 libvorbis0a libvorbisenc2 libmpg123-0 libmp3lame0

chromium: $(CHROMIUM_STAMP)

$(CHROMIUM_STAMP):
	@if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then \
		echo "chromium: no apt-get/dpkg on this machine; the report-rendering test will be skipped"; exit 0; fi; \
	set -euo pipefail; \
	dir="$(abspath $(CHROMIUM_DIR))"; rm -rf "$$dir"; mkdir -p "$$dir/debs" "$$dir/root"; \
	echo "chromium: apt-get download $(words $(CHROMIUM_DEBS)) Debian packages into $$dir"; \
	sandbox=(-o "APT::Sandbox::User=$$(id -un)"); \
	if ! (cd "$$dir/debs" && apt-get -qq "$${sandbox[@]}" download $(CHROMIUM_DEBS)) 2>/dev/null; then \
		echo "chromium: not in this machine's package lists; reading Debian's into $$dir/apt (no root)"; \
		apt=(-o "Dir::State::Lists=$$dir/apt/lists" -o "Dir::Cache=$$dir/apt/cache"); \
		mkdir -p "$$dir/apt/lists/partial" "$$dir/apt/cache"; \
		apt-get -qq "$${apt[@]}" update; \
		(cd "$$dir/debs" && apt-get -qq "$${apt[@]}" "$${sandbox[@]}" download $(CHROMIUM_DEBS)); \
	fi; \
	for deb in "$$dir"/debs/*.deb; do dpkg -x "$$deb" "$$dir/root"; done; \
	rm -rf "$$dir/debs" "$$dir/apt"; \
	bin="$$dir/root/usr/lib/chromium/chromium"; \
	test -x "$$bin" || { echo "chromium: $$bin missing after unpacking" >&2; exit 1; }; \
	missing=$$(LD_LIBRARY_PATH="$$dir/root/usr/lib/x86_64-linux-gnu:$$dir/root/usr/lib/x86_64-linux-gnu/pulseaudio" \
		ldd "$$bin" | grep "not found" | sort -u || true); \
	if [ -n "$$missing" ]; then \
		echo "chromium: libraries missing (add their Debian packages to CHROMIUM_DEBS):" >&2; \
		echo "$$missing" >&2; exit 1; fi; \
	touch "$@"; echo "chromium: $$bin"

run: venv
	$(BIN)/crm warehouse start
	$(BIN)/crm demo --customers $(CUSTOMERS) --days $(DAYS) --history-days $(HISTORY_DAYS) --start $(START) --seed $(SEED)

test: venv chromium
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
