# BabyShield: every developer and CI entry point. `make run` and `make test`
# install what they need on first use (into .venv/); nothing else is required.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install run test lint format openapi bench synth security lock clean

install: $(STAMP)

# Re-installs only when the lock file or the project metadata changed.
$(STAMP): requirements/dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip sync --quiet --require-hashes requirements/dev.lock
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e .
	@touch $@

# Regenerate both lock files after editing dependencies in pyproject.toml.
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal --python-version 3.11 -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml --quiet --extra dev --generate-hashes --universal --python-version 3.11 -o requirements/dev.lock

$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

run: install
	$(BIN)/babyshield local

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions ops cdk tests benchmarks

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: install
	$(BIN)/babyshield openapi --output docs/openapi.json

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) cdk.out benchmarks/results/*.json .pytest_cache .mypy_cache .ruff_cache
