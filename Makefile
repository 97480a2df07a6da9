# Pneumo: `make run` starts the whole site, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install models clean-venv

$(STAMP): requirements.txt requirements-model.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# The model package pins versions that clash with ours: its data files only.
	$(BIN)/python -m pip install --no-deps -r requirements-model.txt --quiet
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	# Bytecode once, for workers that start with PYTHONDONTWRITEBYTECODE set (about 30 ms of a cold start).
	$(BIN)/python -m compileall -q cases inference pneumo
	$(BIN)/python scripts/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

test: $(STAMP) lint
	bash scripts/ensure_test_tools.sh
	# Convert and check the models once (cached by sha256 under var/models) before the suite uses them.
	DEBUG=1 $(BIN)/python manage.py migrate --noinput -v 0
	DEBUG=1 $(BIN)/python manage.py prepare_models
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
