# `make conformance`: the conformance suite on the bundled implementations.
# `make test`: the project's own tests. Both install what they need first.
# `make lint`: ruff lint and format check (configured in pyproject.toml).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: setup conformance test lint regen

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	@$(PYTHON) -m pip install -q -e ".[test]"

conformance: setup
	$(PYTHON) -m pytest conformance -n auto $(PYTEST_ARGS)

test: setup
	$(PYTHON) -m pytest tests -n auto $(PYTEST_ARGS)

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

regen: setup
	$(PYTHON) -m conformance regen
