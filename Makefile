# open_clip_sparo: `make test`, `make test-fast`, `make test-compat`, `make demo`, `make lint`,
# `make bench`, `make gpu-check`
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast test-compat lint demo demo-ablation demo-dino bench gpu-check clean

install: $(STAMP)

# re-installs only when the dependency files change, or the .pth file an install copies
$(STAMP): requirements.txt pyproject.toml src/open_clip_sparo_autoload.pth
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

# without the end-to-end runs (demos, multi-process training, benchmark runs): about 2.5 minutes
test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

# the version ranges in pyproject.toml, tested at both ends (docs/compatibility.md): one venv per
# compat/<end>.txt, holding the lock (requirements.txt) with the packages that file pins at that
# end; torch and torchvision (gigabytes) are installed once, from the lock, in a venv the others
# see through a .pth file. Each venv is re-made only when its pins change.
COMPAT_ENDS := oldest newest
COMPAT_TORCH := .venv-compat-torch
# models, registry, checkpoints, loading, training (one process; the two-process, crash-resume
# and 20-step determinism runs stay in `make test`), CLIP_benchmark, shards, golden outputs
COMPAT_TESTS := tests/test_model.py tests/test_registry.py tests/test_openclip_internals.py \
	tests/test_open_clip_sparo_autoload.py tests/io \
	tests/training tests/evaluation/test_benchmark.py tests/dino/test_data.py \
	tests/dino/test_backbone.py tests/synthetic/test_datasets.py $(wildcard tests/test_golden.py)
COMPAT_SKIPPED := test_torch_compile_matches_eager or test_kill_while_saving_then_resume_latest \
	or test_two_processes_train_then_resume_latest or test_same_seed_gives_the_same_losses
SITE_PACKAGES := -c 'import sysconfig; print(sysconfig.get_path("purelib"))'

test-compat: $(COMPAT_ENDS:%=.venv-compat-%/.installed)
	for end in $(COMPAT_ENDS); do \
		echo "== make test-compat, $$end end: $$(grep -v '^#' compat/$$end.txt | tr '\n' ' ')"; \
		.venv-compat-$$end/bin/python -m pytest -n 2 -k "not ($(COMPAT_SKIPPED))" $(COMPAT_TESTS) \
			|| exit 1; \
	done

$(COMPAT_TORCH)/.installed: requirements.txt
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	grep -E '^torch(vision)?==' requirements.txt > $(@D)/torch.txt
	$(@D)/bin/python -m pip install --quiet -r $(@D)/torch.txt
	touch $@

.venv-compat-%/.installed: compat/%.txt requirements.txt pyproject.toml \
		src/open_clip_sparo_autoload.pth $(COMPAT_TORCH)/.installed
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(COMPAT_TORCH)/bin/python $(SITE_PACKAGES) > "$$($(@D)/bin/python $(SITE_PACKAGES))/torch.pth"
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	awk -F== 'NR == FNR { end[$$1] = 1; next } !($$1 in end)' compat/$*.txt requirements.txt \
		| cat - compat/$*.txt > $(@D)/constraints.txt
	$(@D)/bin/python -m pip install --quiet -c $(@D)/constraints.txt -e ".[test]"
	touch $@

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

# one CUDA GPU, under 8 minutes: the bench set in fp32 and bf16, torchrun training runs (eager and
# --torchcompile), a DINO step and the finite-loss check, against their OpenCLIP baselines;
# rewrites docs/performance.md, fails on a missed target
gpu-check: install
	$(BIN)/python -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

# style, and the architecture: import contracts in pyproject.toml (docs/architecture.md)
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .venv-compat-* build dist src/*.egg-info
