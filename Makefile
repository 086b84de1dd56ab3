# Every target installs what it needs into .venv on first use.
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# sam build needs the Lambda runtime's Python (3.13) on PATH.
PY313 ?= $(firstword $(wildcard /root/.pyenv/versions/3.13*/bin) $(dir $(shell command -v python3.13 2>/dev/null)))

.PHONY: run serve test lint typecheck template pytest bench build clean

$(VENV)/.installed: requirements.txt handler/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	VERBOSE=$(VERBOSE) $(PY) -m devtools.run

serve: $(VENV)/.installed
	$(PY) -m devtools.serve

test: lint typecheck template pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

template: $(VENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region us-east-1

pytest: $(VENV)/.installed
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(PY) -m devtools.bench

build: $(VENV)/.installed
	PATH="$(PY313):$$PATH" $(BIN)/sam build --template template.yaml

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
