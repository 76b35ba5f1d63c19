# The README's two commands, `make demo` and `make test`, do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
SYSTEM_PACKAGES := bubblewrap iproute2
SYSTEM_TOOLS := bwrap ip

.PHONY: deps venv dev demo test lint typecheck unit bench clean

# System packages the sandbox and the network-namespace tests need. As root (CI, containers) we
# install what is missing; otherwise we print the one command to run and carry on.
deps:
	@missing=""; \
	for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "deps: installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	else \
		echo "deps: missing$$missing; run: sudo apt-get install -y $(SYSTEM_PACKAGES)"; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP)
dev: $(DEV_STAMP)

demo: deps $(STAMP)
	$(BIN)/python -m node.demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check protocol gpu node tests bench
	$(BIN)/ruff format --check protocol gpu node tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy protocol gpu node

unit: $(DEV_STAMP)
	$(BIN)/pytest -q tests/unit

test: deps lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

# Each script prints its figures and one JSON line. The short defaults; the README's figures table
# names the longer runs (e.g. `bench/footprint.py --nodes 32 --minutes 10`).
bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/consensus_sim.py
	$(BIN)/python bench/gossip.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/negotiation.py
	$(BIN)/python bench/finality.py
	$(BIN)/python bench/testnet_market.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
