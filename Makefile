# striketracker: two commands on a fresh machine.
#   make demo   runs the main job on embedded defaults (SQLite, local MLflow, local Label Studio)
#   make test   passes the tests (unit + integration against real Label Studio, MLflow, PostgreSQL and Chromium)
# Both bootstrap what they need from a bare PATH: uv (from PyPI into ~/.local/bin if missing; called by its full
# path, since a fresh PATH lacks ~/.local/bin), the locked environment, Label Studio's own isolated environment
# (built with the uv binary the locked environment ships), and Debian's packages for the tests.

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
# Debian packages the test suite drives for real: the browser, GDAL's command-line tools, PostgreSQL.
SYSTEM_PACKAGES := chromium gdal-bin postgresql

.PHONY: help bootstrap sync labelstudio-env system-packages demo test test-fast lint format clean

help:
	@echo "make demo   - the main job: a district campaign end to end (embedded defaults)"
	@echo "make test   - unit + integration test suite"
	@echo "make lint   - ruff lint, ruff format check, mypy"

bootstrap:
	@[ -x "$(UV)" ] || python3 -m pip install --user --quiet uv
	@[ -x "$(UV)" ] || { echo "error: uv is not at $(UV) after installing it; install uv and rerun"; exit 1; }

sync: bootstrap
	$(UV) sync --frozen

labelstudio-env: sync
	$(RUN) striketracker labelstudio install

system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v ogrinfo >/dev/null 2>&1 || missing="$$missing gdal-bin"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
			|| { echo "error: could not install$$missing with apt-get; install them and rerun"; exit 1; }; \
	fi

demo: labelstudio-env
	$(RUN) striketracker demo

test: sync labelstudio-env system-packages
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
