# open_clip_sparo: `make test`, `make test-fast`, `make demo`, `make lint`, `make bench`
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast lint demo demo-ablation demo-dino bench clean

install: $(STAMP)

# re-installs only when the dependency files change
$(STAMP): requirements.txt pyproject.toml
	@echo "make install: setting up $(VENV) (requirements.txt, then this package; a few minutes the first time)"
	@test -x $(BIN)/python || { echo "  creating the virtual environment $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "  upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "  installing requirements.txt (PyTorch, OpenCLIP, ...)"
	@$(BIN)/python -m pip install --quiet -r requirements.txt
	@echo "  installing open_clip_sparo from this checkout (editable)"
	@$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)
	@echo "make install: done; $(VENV) is up to date with requirements.txt and pyproject.toml"

test: install
	$(BIN)/python -m pytest -n 2 tests

# without the end-to-end runs (demos, multi-process training, benchmark runs): under 2 minutes
test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

# the README's main job: baseline against SPARO on the synthetic world (10 min on 2 cores with install)
demo: install
	$(BIN)/sparo demo --out runs/demo

# the paper's controls beside the pair (docs/model.md, "Controls"); ABLATION_MODELS adds gap/codebook
ABLATION_MODELS ?= ViT-Ti-8-64 sparo-ViT-Ti-8-64 bottleneck-ViT-Ti-8-64
demo-ablation: install
	$(BIN)/sparo demo --models $(ABLATION_MODELS) --out runs/demo-ablation

# DINO with a class token against DINO with SPARO on the synthetic world, k-NN and linear probe
demo-dino: install
	$(BIN)/sparo demo-dino --out runs/demo-dino

# SPARO's cost as ratios against OpenCLIP; rewrites docs/performance.md, fails on a missed target
bench: install
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

# style, and the architecture: import contracts in pyproject.toml (docs/architecture.md)
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build dist src/*.egg-info
