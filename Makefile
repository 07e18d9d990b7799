# lpnode — the two commands a user needs: `make up` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# The PyTorch release to install; override with e.g. `make TORCH='torch==2.14.1' test`.
TORCH ?= torch==2.13.0
# anvil for the dev chain, installed into .tools/ (src/lpnode/payments/devchain.py finds it there).
ANVIL_VERSION := 1.7.1
ANVIL_STAMP := .tools/.anvil-$(ANVIL_VERSION)
BIN := $(VENV)/bin
STAMP := $(VENV)/.lpnode-installed
UP_ARGS ?=

.PHONY: up test test-fast check openapi clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# anvil (npm @foundry-rs/anvil, pinned): the local chain of `lpnode devchain`, `lpnode up --network devchain` and
# the payment tests. Without npm, `make up` goes on (off-chain needs no chain) and says how to get it.
$(ANVIL_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p .tools && echo '*' > .tools/.gitignore && \
		npm install --silent --no-audit --no-fund --prefix .tools @foundry-rs/anvil@$(ANVIL_VERSION) && \
		touch $(ANVIL_STAMP); \
	else echo "npm not found: skipping anvil, which only the dev chain needs (install Node.js, then make again)" >&2; fi

up: $(STAMP) $(ANVIL_STAMP)  ## run gateway, orchestrator and runners here, offline, with tiny models (UP_ARGS="--http-addr 127.0.0.1:9935")
	$(BIN)/lpnode up $(UP_ARGS)

test: $(STAMP) $(ANVIL_STAMP)  ## run the test suite (real processes on loopback; installs Chromium for the dashboard tests)
	scripts/install-test-deps
	$(BIN)/python -m pytest -n 2

test-fast: $(STAMP)  ## the in-process tests only, under a minute (`make test` runs everything)
	$(BIN)/python -m pytest -m "not processes"

check: $(STAMP)  ## lint, format check and strict type check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

openapi: $(STAMP)  ## regenerate docs/openapi/runner.json from the code
	$(BIN)/lpnode openapi --output docs/openapi/runner.json

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
