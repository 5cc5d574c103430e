# Ketamine workbench — one command builds everything: `make all`.  `make help` lists every target.
#
# The DAG: env → study data (generate + verify) → derived features → notebooks (papermill) → HTML → index.
# Stamps (build/<study>/stamps/*.hash) hold hashes of parameters, code and data; they are rewritten only
# when those change, so a second `make all` does nothing and an edit reruns only what depends on it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

STUDY ?= data_manifests/default.yml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := env/requirements.lock.txt
# The environment is keyed on the lock file's content, not its date: a warm install does nothing.
ENV_HASH := $(shell cat $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
ENV_OK := $(VENV)/.installed-$(ENV_HASH)

STUDY_NAME := $(shell sed -n "s/^study:[[:space:]]*['\"]\{0,1\}\([^'\" ]*\).*/\1/p" $(STUDY) 2>/dev/null)
ifeq ($(STUDY_NAME),)
$(error $(STUDY): no such manifest, or it has no 'study:' field)
endif
BUILD := build/$(STUDY_NAME)
STAMPS := $(BUILD)/stamps
REPORTS := reports/$(STUDY_NAME)
NOTEBOOKS := $(sort $(basename $(notdir $(wildcard notebooks/[0-9][0-9]_*.ipynb))))
REPORT_HTML := $(NOTEBOOKS:%=$(REPORTS)/%.html)
HOST ?= 127.0.0.1

# Stamps are only prerequisites of pattern rules, so make would treat them as intermediate and delete them;
# they are kept (and only they: a report that is deleted is an ordinary missing target and is rebuilt).
STAMP_FILES := $(NOTEBOOKS:%=$(STAMPS)/%.hash) $(STAMPS)/features.hash $(STAMPS)/figures.hash
.SECONDARY: $(STAMP_FILES)

# One build of a study at a time: `all`, `reports`, `study` and `test` re-run themselves under an exclusive lock
# on build/<study>/.make.lock.  A second run on the same study waits for the first (up to KW_LOCK_WAIT_S
# seconds, then refuses with a message), then finds everything built; runs on other studies are not held up.
KW_LOCK_WAIT_S ?= 7200
LOCK_FILE := $(BUILD)/.make.lock
define locked
	@mkdir -p $(BUILD)
	@flock -n $(LOCK_FILE) true || echo "Another build of study '$(STUDY_NAME)' is running; waiting for it (lock $(LOCK_FILE))"
	@STUDY=$(STUDY) flock -w $(KW_LOCK_WAIT_S) -E 75 $(LOCK_FILE) $(MAKE) --no-print-directory $(1) \
	  || { code=$$?; [ $$code -eq 75 ] && echo "Gave up waiting for the other build of '$(STUDY_NAME)' after $(KW_LOCK_WAIT_S) s" >&2; exit $$code; }
endef

.PHONY: all help env study verify freeze reports test test-fast lint bench calibrate lab serve stream monitor clean \
        distclean lock FORCE \
        _all _reports _study _test

all: ## Set up, build the study, run every notebook, write reports/index.html
	$(call locked,_all)

_all: reports/index.html
	@echo "Reports: reports/index.html ($(STUDY_NAME): $(NOTEBOOKS))"

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  Variables: STUDY=data_manifests/<study>.yml (default $(STUDY)), HOST for make serve/lab"

env: $(ENV_OK) ## Create .venv from the pinned lock (does nothing when the lock is unchanged)

$(ENV_OK):
	@echo "Installing the pinned environment into $(VENV) (first time: ~1-2 min, ~1.7 GB)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

study: ## Generate (synthetic studies) and verify the study's data
	$(call locked,_study)

_study: $(STAMPS)/data.hash

verify: $(ENV_OK) ## Check every data file against the manifest's checksums
	$(PY) -m pipelines.study.manifest verify $(STUDY)

freeze: $(ENV_OK) ## Rewrite the manifest's checksums from the data on disk (review, then commit)
	$(PY) -m pipelines.study.manifest freeze $(STUDY)

# Always asked; rewritten only when the data checksum changes.  Fails (and stops the build) on any mismatch.
$(STAMPS)/data.hash: $(ENV_OK) FORCE
	@mkdir -p $(STAMPS)
	$(PY) -m pipelines.make.build data $(STUDY) 2>&1 | tee $(BUILD)/data.log

$(STAMPS)/%.hash: $(STAMPS)/data.hash FORCE
	@$(PY) -m pipelines.make.build stamp $(STUDY) $*

# Derived EEG features: every notebook that reads them lists the file in its prerequisites below.
FEATURES := $(BUILD)/derivatives/ketamine-workbench/features.done
$(FEATURES): $(STAMPS)/features.hash FORCE
	@mkdir -p $(dir $@)
	$(PY) -m pipelines.eeg.features $(STUDY) 2>&1 | tee $(dir $@)features.log

$(REPORTS)/%.html: $(STAMPS)/%.hash
	$(PY) -m pipelines.make.build notebook $(STUDY) $*

# Notebooks that read derived outputs follow the steps that write them (01 reads the EEG features; 04 and 06
# read the tables 01-03 write).  The rules are generated from the one declaration of who writes and who reads
# each table (pipelines/study/derived.py PRODUCERS / READERS / FEATURE_READERS), with the system Python.
NOTEBOOK_DEPS := build/notebook-deps.mk
$(NOTEBOOK_DEPS): pipelines/study/derived.py pipelines/make/notebook_deps.py
	@mkdir -p $(dir $@)
	$(PYTHON) pipelines/make/notebook_deps.py > $@.tmp && mv $@.tmp $@
include $(NOTEBOOK_DEPS)

# Offline HTML of the dashboards' key interactive figures (no server needed), from the EEG derivatives.
# They follow the EEG report (notebook 01); a project without it has no figures step.
FIGURES := $(if $(filter 01_eeg_entropy_dose,$(NOTEBOOKS)),$(REPORTS)/figures/.done)
ifneq ($(FIGURES),)
$(FIGURES): $(STAMPS)/figures.hash $(FEATURES) $(REPORTS)/01_eeg_entropy_dose.html
	$(PY) -m pipelines.make.build figures $(STUDY)
endif

reports: ## Run every notebook of STUDY and export the offline figures
	$(call locked,_reports)

_reports: $(REPORT_HTML) $(FIGURES)

reports/index.html: $(REPORT_HTML) $(FIGURES) pipelines/make/templates/index.html
	$(PY) -m pipelines.make.build index

test: ## Run the test suite (pytest; builds the default study and its features first)
	$(call locked,_test)

_test: $(ENV_OK) $(STAMPS)/data.hash $(FEATURES)
	$(PY) -m pytest -q --durations=15

test-fast: $(ENV_OK) ## The fast lane (under a minute): unit tests without generated studies, browsers or clusters
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider --durations=5

lint: $(ENV_OK) ## ruff (lint and format check) and codespell, as pre-commit runs them
	$(VENV)/bin/ruff check pipelines tests benchmarks
	$(VENV)/bin/ruff format --check pipelines tests benchmarks
	$(VENV)/bin/codespell

calibrate: $(ENV_OK) ## Calibrate the inference routines by simulation (reports/calibration/calibration.json and .md)
	$(PY) -m pipelines.stats.calibration --out reports/calibration

bench: $(ENV_OK) ## Run the benchmarks; writes reports/bench/bench.json and bench.md
	$(PY) -m benchmarks

lab: $(ENV_OK) ## JupyterLab on $(HOST) with the project's environment as kernel
	$(PY) -m jupyter lab --ip=$(HOST) --no-browser --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

serve: $(ENV_OK) ## Panel dashboards on $(HOST) (URLs printed); SERVE_FLAGS e.g. "--share --users-file FILE", "--num-procs 1" (default: one process per core, at most 4)
	$(PY) -m pipelines.dashboards.serve --host $(HOST) --manifest $(STUDY) $(SERVE_FLAGS)

# Live titration over LSL on this machine (docs/live.md): a player in one terminal, the monitor in another.
stream: $(ENV_OK) ## Stream a recording of STUDY over LSL (loopback): make stream RECORDING=sub-01_ses-ket100
	@test -n "$(RECORDING)" || { echo "usage: make stream RECORDING=sub-01_ses-ket100 [STUDY=$(STUDY)]" >&2; exit 2; }
	$(PY) -m pipelines.eeg.live play $(STUDY) $(RECORDING)

monitor: $(ENV_OK) ## Follow an LSL stream live, record the session: make monitor STREAM=kw-sub-01_ses-ket100_task-rest
	@test -n "$(STREAM)" || { echo "usage: make monitor STREAM=<name printed by make stream> [STUDY=$(STUDY)]" >&2; exit 2; }
	$(PY) -m pipelines.eeg.live monitor $(STUDY) --stream $(STREAM)

lock: ## Re-resolve env/requirements.in into the pinned lock (needs the package index)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r env/requirements.in
	.venv-lock/bin/pip freeze --exclude-editable > $(LOCK)
	rm -rf .venv-lock

clean: ## Remove derived outputs and reports of every study (keeps the data and .venv)
	rm -rf build reports/*/ reports/index.html

distclean: clean ## Also remove generated data and .venv
	rm -rf data $(VENV)

FORCE:
