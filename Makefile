# The two set-up commands: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: install test test-fast lint format demo weights gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,web]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -n $(JOBS) -q

test-fast: install
	$(BIN)/python -m pytest -n $(JOBS) -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install
	bash tools/demo.sh

# Rebuild every default weight file from data/emoji64 (see weights/README.md for devices and timings).
weights: install
	bash tools/make_weights.sh

# Tests, benchmarks and `make weights` on a GPU in one run, results under $$OUT (tools/gpu_check.sh; --dry-run on CPU).
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf runs demo-out .pytest_cache .ruff_cache
