# Two set-up commands, both working on a fresh machine:
#   make run    installs alpha and runs the daemon in demo mode (offline, synthetic market)
#   make test   installs alpha, its test counterparts (anvil, Aave v3, Prometheus, Alertmanager) and runs the tests
# make test-long runs only the property tests, with Hypothesis's `long` profile (many more random examples).
# make chaos runs the chaos suite (tests/chaos: kill -9, every venue fault, two instances; several minutes,
# not part of make test); CHAOS_ARGS=--quick for a smoke run. The figures go to reports/chaos.json.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CHAIN  := deploy/chain
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-long chaos setup system-deps node-deps lint typecheck bench evaluate clean

setup: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:  # prometheus + promtool, alertmanager + amtool (deploy tests), chromium (the report's browser test)
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
	  && command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager chromium; }

node-deps: $(CHAIN)/node_modules/.stamp

$(CHAIN)/node_modules/.stamp: $(CHAIN)/package.json $(wildcard $(CHAIN)/package-lock.json)
	cd $(CHAIN) && npm install --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(BIN)/alpha run --config config/demo.yaml

test: setup system-deps node-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

test-long: setup
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -m hypothesis --timeout=1800 --durations=10

chaos: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m tests.chaos $(CHAOS_ARGS)

lint: setup
	$(BIN)/ruff check alpha fuses tests

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m alpha.bench

# The walk-forward of the shipped strategy on every recorded series with prices (../shared/data); long.
evaluate: setup
	$(BIN)/alpha research evaluate --out reports/evaluate $(EVALUATE_ARGS)

clean:
	rm -rf $(VENV) $(CHAIN)/node_modules var reports
