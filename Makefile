# Everything a newcomer needs: `make run` and `make test`. Needs only Python 3.11 on the PATH.
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

# Use uv from the PATH, or bootstrap a private copy with pip.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
UV_BOOTSTRAP := .tools/bin/uv
endif

VENV_BIN := .venv/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-sqlite test-pg lint fmt typecheck check bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

install: $(UV_BOOTSTRAP)
	@$(UV) sync --frozen --quiet
	@$(VENV_BIN)/tessera version >/dev/null && echo "tessera installed in .venv ($$($(VENV_BIN)/tessera version))"

run: install
	$(VENV_BIN)/tessera migrate
	$(VENV_BIN)/tessera serve --host $(HOST) --port $(PORT)

test: install
	$(VENV_BIN)/python -m pytest -n auto $(PYTEST_ARGS)

test-sqlite: install
	TESSERA_TEST_BACKENDS=sqlite $(VENV_BIN)/python -m pytest -n auto $(PYTEST_ARGS)

test-pg: install
	TESSERA_TEST_BACKENDS=postgresql $(VENV_BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: install
	$(VENV_BIN)/ruff check src tests bench alembic
	$(VENV_BIN)/ruff format --check src tests bench alembic
	$(VENV_BIN)/mypy

typecheck: install
	$(VENV_BIN)/mypy

fmt: install
	$(VENV_BIN)/ruff format src tests bench alembic
	$(VENV_BIN)/ruff check --fix src tests bench alembic

check: lint test

bench: install
	$(VENV_BIN)/python bench/auth_me.py

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
