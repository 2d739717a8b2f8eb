# striketracker: two commands on a fresh machine.
#   make demo   runs the main job on embedded defaults (SQLite, local MLflow, local Label Studio)
#   make test   passes the tests (unit + integration against real Label Studio, MLflow and Chromium)
# Both bootstrap what they need: uv (from PyPI if missing), the locked environment, Label Studio's own
# isolated environment, and Debian's chromium for the browser test.

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
RUN := $(UV) run --frozen

.PHONY: help bootstrap sync labelstudio-env browser demo test test-fast lint format bench-tiny clean

help:
	@echo "make demo   - generate the district scenario, ingest it, report (embedded defaults)"
	@echo "make test   - lint-free unit + integration test suite"
	@echo "make lint   - ruff lint, ruff format check, mypy"

bootstrap:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --user --quiet uv

sync: bootstrap
	$(UV) sync --frozen

labelstudio-env: sync
	$(RUN) striketracker labelstudio install

browser:
	@test -x /usr/bin/chromium || { (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "warning: could not install Debian chromium; the browser test will fail"; }

demo: sync
	$(RUN) striketracker demo

test: sync labelstudio-env browser
	$(RUN) pytest -q --timeout=900

test-fast: sync
	$(RUN) pytest -q -m "not integration"

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean:
	rm -rf .work .pytest_cache .ruff_cache .mypy_cache
