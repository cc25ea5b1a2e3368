# bonetumor: `make paper` regenerates the paper's tables and figures; `make test` checks everything.
# Both set themselves up (the `env` target) on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# PROFILE=smoke|quick|full; empty = full when CUDA is available, else quick (decided by `bonetumor paper`).
PROFILE ?=
# DATA=/path/to/BTXRD uses the real radiographs; empty = the profile's synthetic phantom.
DATA ?=
CLINICAL_CSV ?=

# Extra arguments for `make lab`, e.g. LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=

.PHONY: help env lab-setup paper ablations test test-fast pytest nbval lab strip clean distclean

help: ## show this help
	@echo "bonetumor — reproducible companion to a VGG-19 Mask R-CNN bone-tumour paper"
	@echo
	@echo "usage: make TARGET [PROFILE=smoke|quick|full] [DATA=/path/to/BTXRD] [CLINICAL_CSV=file.csv]"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

env: $(STAMP) lab-setup ## create .venv, install the package and its pinned dependencies, register the Jupyter kernel, set up the lab

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name bonetumor --display-name "Python (bonetumor)"
	@touch $@

# Opening or running a notebook never shows in `git status`: a save hook for notebooks/ and the nbstripout git
# filter of .gitattributes (see bonetumor/lab.py); "Python (bonetumor)" the default kernel.
lab-setup: $(STAMP)
	@$(BIN)/python tools/lab_setup.py install

paper: env ## run notebooks/NN_*.ipynb in order (papermill) and regenerate reports/
	$(BIN)/bonetumor paper $(if $(PROFILE),--profile $(PROFILE)) $(if $(DATA),--data "$(DATA)") \
		$(if $(CLINICAL_CSV),--clinical-csv "$(CLINICAL_CSV)")

ablations: env ## notebook 07 alone with every comparator and ablation (params/ablations.yaml: quick's recipe, 12 epochs; about 45 min on 2 cores) into reports/ablations/
	$(BIN)/bonetumor paper --profile ablations --only 07 --reports reports/ablations $(if $(DATA),--data "$(DATA)")

test: pytest nbval ## pytest on the package, then nbval on every notebook (smoke profile)

pytest: env
	$(BIN)/python -m pytest -q tests

test-fast: env ## the pytest cases not marked slow (seconds to a minute; make test runs everything)
	$(BIN)/python -m pytest -q -m "not slow" tests

nbval: env
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-kernel-name bonetumor \
		--nbval-cell-timeout 600 notebooks

lab: env ## open JupyterLab at the project root (notebooks/ and reports/), "Python (bonetumor)" the default kernel
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

strip: env ## remove outputs from the notebooks in notebooks/ (executed copies live in reports/notebooks/)
	$(BIN)/python tools/lab_setup.py strip notebooks/*.ipynb

clean: ## remove scratch outputs, smoke-profile data and runs
	rm -rf build .pytest_cache data/phantom-smoke-* runs/smoke-*

distclean: clean ## also remove .venv, all generated data and all training runs (and the git filter that needs .venv)
	rm -rf $(VENV) data runs
	-@git config --remove-section filter.nbstripout 2>/dev/null; git config --remove-section diff.ipynb 2>/dev/null; true
