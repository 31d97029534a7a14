# kexue: two commands do everything on a fresh machine.
#   make reproduce   set up .venv, install kexue with its data/report extras, run `kexue reproduce --quick`
#   make test        set up .venv with the dev extra, run the default test suite
# Variables: PYTHON (interpreter that creates .venv), VENV, TORCH_SPEC (what to pip-install when .venv has no
# torch; e.g. TORCH_SPEC="torch==2.13.0" or a CUDA wheel spec), SYSTEM_DEPS=0 to skip apt packages,
# REPRODUCE_ARGS (extra arguments for `kexue reproduce`), PYTEST_ARGS.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SYSTEM_DEPS ?= 1
REPRODUCE_ARGS ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Debian packages: Fashion-MNIST (spec 11 §3.2) and Chromium for the report's browser test.
APT_PACKAGES := dataset-fashion-mnist chromium

.PHONY: reproduce test test-slow lint typecheck bench venv torch system-deps clean help

help:
	@echo "make reproduce   # set up and run every experiment (--quick), report in reports/latest/index.html"
	@echo "make test        # set up and run the default test suite"
	@echo "make test-slow   # the long experiment tests (marked slow)"
	@echo "make lint typecheck"
	@echo "make bench       # benchmarks against the anchor libraries -> benchmarks/results/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

# Install torch only when the venv has none, so an existing (e.g. CUDA) torch is never replaced.
torch: venv
	@$(BIN)/python -c "import torch" 2>/dev/null \
	  && echo "torch present: $$($(BIN)/python -c 'import torch; print(torch.__version__)')" \
	  || $(PIP) install --quiet "$(TORCH_SPEC)"

# Best effort: needs root and apt-get; everything degrades to a clear skip/error without them.
system-deps:
	@if [ "$(SYSTEM_DEPS)" = "1" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the affected datasets/tests will say so"; \
	  fi; \
	else echo "skipping apt packages ($(APT_PACKAGES)): run as root with apt-get, or see 'kexue data check'"; fi

$(VENV)/.stamp-reproduce: pyproject.toml | torch
	$(PIP) install --quiet -e ".[data,kbqa,report]"
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | torch
	$(PIP) install --quiet -e ".[data,kbqa,report,hf,dev]"
	@touch $@

reproduce: system-deps torch $(VENV)/.stamp-reproduce
	$(BIN)/kexue data prepare --all
	$(BIN)/kexue reproduce --quick $(REPRODUCE_ARGS)

test: system-deps torch $(VENV)/.stamp-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: system-deps torch $(VENV)/.stamp-test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.stamp-test
	$(BIN)/mypy

# Benchmarks against the anchors of spec 12. Anchors that declare torch/torchvision/tensorflow are
# installed with --no-deps so that torch is never replaced; missing anchors are reported, not fatal.
BENCH_ANCHORS ?= torch-mimicry==0.1.16 pythae==0.1.2 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 marisa-trie==1.4.1 libmtl==1.1.5 torchjd==0.18.0
bench: $(VENV)/.stamp-test
	-$(PIP) install --quiet --no-deps $(BENCH_ANCHORS)
	$(BIN)/python benchmarks/lipschitz.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/density.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/penalties.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/retrieval.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/mtl.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/primary_aux.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/discrete.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/discrete_sampling.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/hubness.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) reports/latest .pytest_cache .mypy_cache .ruff_cache
