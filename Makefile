# semedit: every target that needs the virtual environment creates it first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEMEDIT := $(VENV)/bin/semedit
STAMP := $(VENV)/.installed

# Overridable knobs for the job targets: extra key=value overrides and config files.
ARGS ?=
GENERATOR ?=
INPUT ?=
# The newest hair-transfer run's checkpoint (run folders are named hair-<date>-<time>-<id>).
HAIR_MODEL ?= $(lastword $(sort $(wildcard runs/hair-*/checkpoints/last.ckpt)))
FACES ?=
SWEEP ?= configs/sweeps/hair.yaml
SWEEP_ID ?=
COUNT ?= 1
PROJECT ?=
ENTITY ?=

.DEFAULT_GOAL := help
.PHONY: align help install test test-fast test-gpu lint generate bench bench-record train-hair train-direction eval-identity eval-hair demo invert \
        eval-inversion calibrate-metrics sweep agent clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision are pinned as a pair in pyproject.toml (lpips needs torchvision).
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install semedit with its dev extras

test: $(STAMP) ## run every test that needs no GPU, DDP/kill/SLURM simulations included (what CI runs)
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP) ## the edit loop: leaves out the multi-process tests (DDP, kill/resume, SLURM simulation)
	$(PY) -m pytest -q -m "not gpu and not multiprocess"

test-gpu: $(STAMP) ## the tests that need a CUDA device
	$(PY) -m pytest -q -m gpu

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

generate: $(STAMP) ## images from seeds: make generate GENERATOR=ffhq.pkl ARGS="--seeds 0-7 --truncation-psi 0.7"
	$(SEMEDIT) generate $(if $(GENERATOR),--generator $(GENERATOR),) $(if $(ARGS),$(ARGS),--seeds 0-7 --truncation-psi 0.7) --out outputs/generate

# `make bench` writes benchmarks/results/latest/ (git-ignored); `make bench-record` updates the tracked JSON.
BENCH_OUT ?= benchmarks/results/latest
NVLABS ?= $(NVLABS_STYLEGAN2_ADA)

bench: $(STAMP) ## run the benchmarks with progress bars; JSON goes to benchmarks/results/latest/ (untracked)
	@mkdir -p $(BENCH_OUT)
	$(PY) benchmarks/speed.py --out $(BENCH_OUT)/speed.json $(if $(NVLABS),--nvlabs $(NVLABS),)
	$(PY) benchmarks/perception.py --out $(BENCH_OUT)/perception.json
	$(PY) benchmarks/datamodule.py --out $(BENCH_OUT)/datamodule.json
	$(PY) benchmarks/hair.py --out $(BENCH_OUT)/hair.json
	$(PY) benchmarks/chunkygan.py --out $(BENCH_OUT)/chunkygan.json
	$(PY) benchmarks/faces.py --out $(BENCH_OUT)/faces.json
	$(PY) benchmarks/hair_batch.py --out $(BENCH_OUT)/hair_batch.json

bench-record: ## run the benchmarks and update the tracked JSON in benchmarks/results/
	$(MAKE) bench BENCH_OUT=benchmarks/results

train-hair: $(STAMP) ## train hair transfer (tiny CPU default; ARGS="key=value ..." or ARGS="--config configs/hair/ffhq1024.yaml")
	WANDB_MODE=$${WANDB_MODE:-offline} $(SEMEDIT) train hair $(ARGS)

train-direction: $(STAMP) ## train a latent direction classifier (tiny default: centroid_x scorer)
	WANDB_MODE=$${WANDB_MODE:-offline} $(SEMEDIT) train direction $(ARGS)

eval-identity: $(STAMP) ## identity retrieval after hair transfer (HAIR_MODEL=...; default: the newest train-hair run); results in <hair run>/eval-identity-<protocol hash>/
	@test -n "$(HAIR_MODEL)" || (echo "no hair checkpoint: run 'make train-hair' first or pass HAIR_MODEL=path/to/last.ckpt"; exit 2)
	$(SEMEDIT) eval-identity hair_model=$(HAIR_MODEL) $(ARGS)

eval-hair: $(STAMP) ## HairFastGAN's table: FID / FID_CLIP (by pose), reconstruction, identity, time (HAIR_MODEL=...; default: the newest train-hair run; tiny: 2 real photos + generated faces, random-weight extractors)
	@test -n "$(HAIR_MODEL)" || (echo "no hair checkpoint: run 'make train-hair' first or pass HAIR_MODEL=path/to/last.ckpt"; exit 2)
	$(SEMEDIT) eval-hair hair_model=$(HAIR_MODEL) $(ARGS)

demo: $(STAMP) ## local web app on http://127.0.0.1:7860 (embedded default; ARGS="--hair-model P --generator G --directions DIR")
	$(SEMEDIT) demo $(ARGS)

align: $(STAMP) ## FFHQ-align raw photos with dlib, offline: make align INPUT="photos/ a.jpg" [OUT=aligned] [ARGS="--size 256"]
	@test -n "$(INPUT)" || (echo "set INPUT to photos or folders, e.g. make align INPUT=photos/ (or INPUT=skimage:astronaut)"; exit 2)
	$(SEMEDIT) align $(INPUT) --out $(or $(OUT),aligned) $(ARGS)

invert: $(STAMP) ## ChunkyGAN inversion of skimage's astronaut photo (tiny default; INPUT=photos or folder)
	$(SEMEDIT) invert $(or $(INPUT),skimage:astronaut) $(ARGS)

eval-inversion: $(STAMP) ## ChunkyGAN projection + identity-after-edit tables (tiny default: two real faces, about 1-2 min on 2 cores; FACES=folder at paper scale)
	$(SEMEDIT) eval-inversion $(or $(FACES),skimage:astronaut matplotlib:grace_hopper) --out runs/eval-inversion $(ARGS)

calibrate-metrics: $(STAMP) ## which LPIPS / L2 / identity variant gives the ChunkyGAN paper's encoder rows (GPU, weights; FACES=aligned test set)
	$(PY) experiments/chunkygan/metric_calibration.py $(or $(FACES),data/celebahq-test-aligned) --out runs/metric-calibration $(ARGS)

sweep: $(STAMP) ## check and register a W&B sweep: make sweep SWEEP=configs/sweeps/hair.yaml [PROJECT=..] [ENTITY=..]
	$(SEMEDIT) sweep check $(SWEEP)
	@if [ "$${WANDB_MODE:-}" = offline ] || [ "$${WANDB_MODE:-}" = disabled ] || { [ -z "$${WANDB_API_KEY:-}" ] && ! grep -qs "api.wandb.ai" "$${HOME}/.netrc"; }; then \
	  echo "make sweep registers the sweep on the W&B server, which needs a W&B account (wandb login)."; \
	  echo "Offline, run the sweep as plain runs instead: the 'offline' command printed above lists their commands"; \
	  echo "(or as a SLURM array: $(SEMEDIT) launch --cluster slurm train JOB --sweep $(SWEEP))"; exit 2; fi
	$(VENV)/bin/wandb sweep $(if $(PROJECT),--project $(PROJECT)) $(if $(ENTITY),--entity $(ENTITY)) $(SWEEP)

agent: $(STAMP) ## run a W&B sweep agent locally: make agent SWEEP_ID=entity/project/id COUNT=4
	@test -n "$(SWEEP_ID)" || (echo "set SWEEP_ID=entity/project/sweep_id (printed by make sweep)"; exit 2)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/wandb agent $(if $(COUNT),--count $(COUNT)) $(SWEEP_ID)

clean: ## remove outputs, runs and caches (keeps .venv)
	rm -rf outputs runs wandb .pytest_cache .ruff_cache
