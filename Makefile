# The README's two commands, `make demo` and `make test`, do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# bubblewrap: the job sandbox. iproute2: the network-namespace tests. e2fsprogs: the size-limited
# work directory of each job (mkfs.ext4). gcc, libc6-dev, libgmp-dev, python3-dev: building
# libp2p's pinned fastecdsa==2.3.2, which has no wheel for CPython 3.11. podman, runc: the
# container executor and its tests (jobs whose image comes as an archive by content id).
SYSTEM_PACKAGES := bubblewrap iproute2 e2fsprogs gcc libc6-dev libgmp-dev python3-dev podman runc

.PHONY: deps venv dev demo test lint typecheck unit bench clean

# System packages (above). As root (CI, containers) we install what is missing; otherwise we print
# the one command to run and carry on.
deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "deps: not a Debian/Ubuntu system; install the equivalents of: $(SYSTEM_PACKAGES)"; exit 0; \
	fi; \
	missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "deps: missing$$missing; run: sudo apt-get install -y$$missing"; \
	fi

$(BIN)/python: | deps
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

# Two pytest-xdist workers: the CI machine's two cores. Most multi-process tests wait on block
# times, so two overlap well; tests/scheduling.py keeps together what must share a worker.
# `make test TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= 2

test: deps lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

# Each script prints its figures and one JSON line. The short defaults; the README's figures table
# names the longer runs (e.g. `bench/footprint.py --nodes 32 --minutes 10`; blob.py and
# economics_sim.py default to their issues' goals: a 2 GiB blob, 10 years of one-second blocks).
bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/consensus_sim.py
	$(BIN)/python bench/gossip.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/negotiation.py
	$(BIN)/python bench/finality.py
	$(BIN)/python bench/testnet_market.py
	$(BIN)/python bench/mempool.py
	$(BIN)/python bench/blob.py --size-mib 256 --raw-mib 128
	$(BIN)/python bench/economics_sim.py --years 1
	$(BIN)/python bench/job_overhead.py
	$(BIN)/python bench/fuzz.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
