# Two commands matter: `make run` (the whole gateway on 127.0.0.1, no Docker, no AWS account)
# and `make test` (every test, including `sam validate --lint` and `sam build`).
# Both create the virtualenv on first use; a changed requirements file reinstalls.

SHELL := /bin/bash
VENV := .venv
# Lambda runs python3.13, and `sam build` needs that exact python on PATH: the venv provides it.
# pyenv shims answer `command -v` even when 3.13 is not selected, so ask pyenv first.
PYTHON313 := $(or $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13))),$(shell python3.13 -c "import sys; print(sys.executable)" 2>/dev/null))
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-fast bench invoke openapi venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt src/requirements.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (install it, e.g. 'pyenv install 3.13')"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON313) -m venv $(VENV)
	@echo "Installing the project's packages into $(VENV) (about a minute the first time) ..."
	@# One line per package as pip goes (its full output is long); a failure still fails the target.
	@set -o pipefail; $(VENV)/bin/pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1 \
		| { grep --line-buffered -E '^(Collecting|Installing|Successfully|ERROR)' || true; }
	@touch $@

run: venv
	$(VENV)/bin/python -m local_stack

# pytest exits 5 when it collects no tests: that is not a failure of the code under test.
test: venv
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-fast: venv
	$(VENV)/bin/python -m pytest -m "not slow"

bench: venv
	$(VENV)/bin/python -m bench

# docs/openapi.json from the request models (tests/unit/test_openapi.py fails while it is stale).
openapi: venv
	$(VENV)/bin/python -m common.web.openapi > docs/openapi.json

# One function with an events/ file against the running `make run`, under the Lambda Runtime
# Interface Emulator through the function's own runtime: make invoke FUNCTION=GenerationsFunction EVENT=events/generations_b64.json
FUNCTION ?= GenerationsFunction
EVENT ?= events/generations_b64.json
invoke: venv
	$(VENV)/bin/python -m local_stack.invoke $(FUNCTION) $(EVENT)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
