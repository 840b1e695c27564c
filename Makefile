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

## run: the gate scenarios on embedded defaults, with the evidence report in reports/latest/
run: $(STAMP)
	$(BIN)/gameday run -m gate --report reports/latest

## test: every test and scenario
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly tests scenarios

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check bot harness tests benchmarks
	$(BIN)/mypy bot/core harness/report

clean:
	rm -rf $(VENV) reports/latest .pytest_cache .mypy_cache .ruff_cache .hypothesis
