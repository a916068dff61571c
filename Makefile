# Everything goes through a local venv (.venv); nothing is installed globally.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# `make run ARGS="--rate 50"` for an open-ended run (Ctrl-C stops it and prints the summary).
ARGS ?= --encounters 3000 --rate 150 --bad-rate 0.04 --summary run-summary.json

.PHONY: setup run test test-unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/claims run $(ARGS)

test: setup
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit

bench: setup
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/coding.py
	$(BIN)/python bench/payer.py
	$(BIN)/python bench/loop.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache run-summary.json
