# Every target installs what it needs into .venv on first use. sam (SAM CLI) runs from .venv too.
export SAM_CLI_TELEMETRY := 0
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Named after the Python it was made with: a venv made with another one is made again.
STAMP := $(VENV)/.installed-py3.13
# checkov pins an old boto3 that conflicts with the runtime's pin: it has a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-py3.13
# The Lambda runtime's Python (3.13): python3.13 on PATH if it runs, else pyenv's newest 3.13.x.
# (A pyenv shim for a version that is not active is on PATH but fails, so each candidate is run.)
PYTHON ?= $(shell for p in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13.*/bin/python3.13 2>/dev/null | sort -rV); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
ENV ?= dev
DRY_RUN ?=

.PHONY: help run serve local-stack test lint typecheck template pytest bench loadtest build deploy delete logs clean python doctor deploy-doctor smoke events replay
.DEFAULT_GOAL := help

# Each target's `## ` comment is its line in `make help` (tests/test_make_help.py: none without).
help: ## every target, one line each (this list; the default)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:[^#]*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The interpreter the venv is made with; fails when there is none.
python: ## the Python 3.13 the venv is made with (fails when there is none)
	@test -n "$(PYTHON)" || { echo "Python 3.13 (the Lambda runtime) not found: put python3.13 on PATH, install it with pyenv (pyenv install 3.13), or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@echo $(PYTHON)

$(STAMP): requirements.txt handler/requirements.txt requirements-dev.txt
	@$(MAKE) -s python >/dev/null
	@echo "First use: making $(VENV) with $(PYTHON) and installing requirements-dev.txt (SAM CLI, moto, boto3, pytest, ...): about 2-3 minutes, once."
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $@
	@echo "$(VENV) ready."

$(CHECKOV_STAMP): requirements-checkov.txt
	@$(MAKE) -s python >/dev/null
	$(PYTHON) -m venv --clear $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -qq -r requirements-checkov.txt
	touch $@

run: $(STAMP) ## the main job on local defaults: events/*.json through the handler against the sandbox and moto
	VERBOSE=$(VERBOSE) $(PY) -m devtools.run

serve: $(STAMP) ## the HTTP API on 127.0.0.1:3000 against the sandbox (write key demo-write-key)
	VERBOSE=$(VERBOSE) $(PY) -m devtools.serve

# moto and the Gainsight sandbox on 0.0.0.0 (fixed ports) for `sam local invoke --env-vars local/env.json`.
local-stack: $(STAMP) ## moto and the sandbox on 0.0.0.0:5005 and :4010, for sam local invoke (docs/local.md)
	$(PY) -m devtools.local_stack

test: lint typecheck template pytest ## lint, typecheck, template and pytest: what CI runs

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy on handler/ and devtools/
	$(BIN)/mypy

# checkov fails on any finding; a check that does not apply is skipped in template.yaml with its reason.
# --skip-download: nothing is fetched from Prisma Cloud (no network in tests).
template: $(STAMP) $(CHECKOV_STAMP) ## cfn-lint, sam validate --lint and checkov on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region us-east-1
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet --compact --skip-download

pytest: $(STAMP) ## every test (loopback only)
	$(BIN)/pytest

bench: $(STAMP) ## the benchmark; rewrites its table in docs/benchmark.md (VERBOSE=1: with EMF metrics)
	$(PY) -m devtools.bench

# Sustained load at 0.5x to 5x Gainsight's quota, time-compressed (a few minutes); not part of test.
loadtest: $(STAMP) ## sustained load at 0.5x-5x the quota (minutes); rewrites docs/loadtest.md's table
	$(PY) -m devtools.loadtest $(LOADTEST_ARGS)

# sam build runs python3.13 from PATH: the venv's is first.
build: $(STAMP) ## sam build with the venv's Python 3.13
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

# The operator tools (doctor, smoke, events) work on ENV's deployed stack, or with LOCAL=1 on make local-stack.
OPERATE = --env $(ENV) $(if $(LOCAL),--local)
DOCTOR_ARGS = $(OPERATE) $(if $(CONFIG),--config $(CONFIG)) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS)) $(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL))

doctor: $(STAMP) ## check everything a deploy needs (credentials, region, config, SecureStrings, Gainsight, the stack); LOCAL=1: make local-stack
	$(PY) -m devtools.doctor $(DOCTOR_ARGS)

replay: $(STAMP) ## park rejected events again once their cause is fixed (CODE=, SINCE=, UNTIL=, DRY_RUN=1 counts them)
	$(PY) -m devtools.replay $(OPERATE) $(if $(CODE),--code $(CODE)) $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL)) $(if $(DRY_RUN),--dry-run)

deploy-doctor: $(STAMP) ## make deploy's first step (SKIP_DOCTOR=1 skips it; a dry run checks only the config)
	$(if $(SKIP_DOCTOR),@echo "doctor skipped (SKIP_DOCTOR=1)",$(PY) -m devtools.doctor $(DOCTOR_ARGS) $(if $(DRY_RUN),--offline))

smoke: $(STAMP) ## send one identify (and one mapped track) through ENV's API and report each outcome; LOCAL=1 too
	$(PY) -m devtools.smoke $(OPERATE) $(if $(EMAIL),--email $(EMAIL))

events: $(STAMP) ## an event's fate (ID=<messageId>), or the parked/rejected ones (STATE=, CODE=, SINCE=, SHOW=1)
	$(PY) -m devtools.events $(OPERATE) $(if $(ID),--id '$(ID)') $(if $(STATE),--state $(STATE)) $(if $(CODE),--code $(CODE)) $(if $(SINCE),--since $(SINCE)) $(if $(BEFORE),--before $(BEFORE)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(SHOW),--show)

# make deploy ENV=dev|prod [CONFIG=config/destination.json] [ALLOWED_HOSTS=cs.acme.example] [ALARM_EMAIL=ops@example.com] [DRY_RUN=1] [SKIP_DOCTOR=1]
deploy: $(STAMP) deploy-doctor $(if $(DRY_RUN),,build) ## deploy ENV=dev|prod with config/destination.json (DRY_RUN=1 prints the commands)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy deploy --env $(ENV) $(if $(CONFIG),--config $(CONFIG)) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS)) $(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL)) $(if $(DRY_RUN),--dry-run)

delete: $(STAMP) ## delete ENV's stack; says what it keeps (DRY_RUN=1 prints the commands)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy delete --env $(ENV) $(if $(DRY_RUN),--dry-run)

# make logs ENV=dev [TAIL=1]
logs: $(STAMP) ## both functions' recent logs of ENV's stack (TAIL=1 follows them)
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m devtools.deploy logs --env $(ENV) $(if $(TAIL),--tail) $(if $(DRY_RUN),--dry-run)

clean: ## remove the venvs and the build and tool caches
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
