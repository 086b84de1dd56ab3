# Every target installs what it needs into .venv on first use. sam (SAM CLI) runs from .venv too.
export SAM_CLI_TELEMETRY := 0
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Named after the Python it was made with: a venv made with another one is made again.
STAMP := $(VENV)/.installed-py3.13
# The Lambda runtime's Python (3.13): python3.13 on PATH if it runs, else pyenv's newest 3.13.x.
# (A pyenv shim for a version that is not active is on PATH but fails, so each candidate is run.)
PYTHON ?= $(shell for p in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13.*/bin/python3.13 2>/dev/null | sort -rV); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
ENV ?= dev
DRY_RUN ?=

.PHONY: run serve local-stack test lint typecheck template pytest bench loadtest build deploy delete logs clean python doctor deploy-doctor smoke events

# The interpreter the venv is made with; fails when there is none.
python:
	@test -n "$(PYTHON)" || { echo "Python 3.13 (the Lambda runtime) not found: put python3.13 on PATH, install it with pyenv (pyenv install 3.13), or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@echo $(PYTHON)

$(STAMP): requirements.txt handler/requirements.txt requirements-dev.txt
	@$(MAKE) -s python >/dev/null
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $@

run: $(STAMP)
	VERBOSE=$(VERBOSE) $(PY) -m devtools.run

serve: $(STAMP)
	VERBOSE=$(VERBOSE) $(PY) -m devtools.serve

# moto and the Gainsight sandbox on 0.0.0.0 (fixed ports) for `sam local invoke --env-vars local/env.json`.
local-stack: $(STAMP)
	$(PY) -m devtools.local_stack

test: lint typecheck template pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

template: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region us-east-1

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(PY) -m devtools.bench

# Sustained load at 0.5x to 5x Gainsight's quota, time-compressed (a few minutes); not part of test.
loadtest: $(STAMP)
	$(PY) -m devtools.loadtest $(LOADTEST_ARGS)

# sam build runs python3.13 from PATH: the venv's is first.
build: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

# The operator tools (doctor, smoke, events) work on ENV's deployed stack, or with LOCAL=1 on make local-stack.
OPERATE = --env $(ENV) $(if $(LOCAL),--local)
DOCTOR_ARGS = $(OPERATE) $(if $(CONFIG),--config $(CONFIG)) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS)) $(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL))

## Check everything a deploy needs (credentials, region, config, SecureStrings, Gainsight, the stack): make doctor ENV=dev [LOCAL=1]
doctor: $(STAMP)
	$(PY) -m devtools.doctor $(DOCTOR_ARGS)

# make deploy's first step (SKIP_DOCTOR=1 skips it; a dry run checks only the config).
deploy-doctor: $(STAMP)
	$(if $(SKIP_DOCTOR),@echo "doctor skipped (SKIP_DOCTOR=1)",$(PY) -m devtools.doctor $(DOCTOR_ARGS) $(if $(DRY_RUN),--offline))

## Send one identify (and one mapped track) through the deployed API and report each outcome: make smoke ENV=dev [LOCAL=1]
smoke: $(STAMP)
	$(PY) -m devtools.smoke $(OPERATE) $(if $(EMAIL),--email $(EMAIL))

## Find an event's fate, or list parked/rejected ones: make events ENV=dev ID=<messageId> | STATE=parked|rejected [CODE=] [SINCE=] [SHOW=1]
events: $(STAMP)
	$(PY) -m devtools.events $(OPERATE) $(if $(ID),--id '$(ID)') $(if $(STATE),--state $(STATE)) $(if $(CODE),--code $(CODE)) $(if $(SINCE),--since $(SINCE)) $(if $(BEFORE),--before $(BEFORE)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(SHOW),--show)

# make deploy ENV=dev|prod [CONFIG=config/destination.json] [ALLOWED_HOSTS=cs.acme.example] [DRY_RUN=1] [SKIP_DOCTOR=1]
deploy: $(STAMP) deploy-doctor $(if $(DRY_RUN),,build)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy deploy --env $(ENV) $(if $(CONFIG),--config $(CONFIG)) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS)) $(if $(DRY_RUN),--dry-run)

delete: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy delete --env $(ENV) $(if $(DRY_RUN),--dry-run)

# make logs ENV=dev [TAIL=1]
logs: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy logs --env $(ENV) $(if $(TAIL),--tail) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
