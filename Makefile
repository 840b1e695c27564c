# The README's commands. Each bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## run: the gate scenarios on embedded defaults; a new sealed evidence set in reports/runs/, reports/latest -> it
run: $(STAMP)
	$(BIN)/gameday run -m gate --report reports

## test: every test and scenario
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly tests scenarios

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check bot harness tests benchmarks
	$(BIN)/mypy bot/core

clean:
	rm -rf $(VENV) reports/runs reports/latest .pytest_cache .mypy_cache .ruff_cache .hypothesis
