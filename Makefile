# make run  - set up .venv and regenerate every figure, table, claims.json and report page
# make test - set up .venv and run the test suite (what CI runs)
# make replicate - the strongest answer a CPU gives: the paper's Shakespeare regime under every reading of what the
#                  paper leaves unsaid (config/regime.yaml: claims.readings), with the 64-seed toys
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run replicate test test-fast dry-run lint report clean

setup: $(STAMP)

# torch first: `torch==2.13.0` takes the local CPU wheel; letting pip pick torch pulls CUDA packages.
# The example plugin router (examples/custom_router) is installed too: the smoke config benchmarks it.
$(STAMP): pyproject.toml examples/custom_router/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -e examples/custom_router
	touch $@

run: setup
	snakemake --cores all

replicate: setup
	snakemake --cores all --configfile config/regime.yaml

test: setup
	pytest

test-fast: setup
	pytest -m "not slow"

dry-run: setup
	snakemake -n

lint: setup
	snakemake --lint

report: setup
	snakemake --report results/snakemake-report.html

# Keeps the prepared corpora and the LM runs (results/data, results/lm) with their logs and benchmark files:
# Snakemake counts a benchmark file as a job output, so deleting one would rerun its job.
clean:
	rm -rf results/toy results/tables results/figures results/report results/claims.json \
	    results/logs/toy_* results/benchmarks/toy_* results/logs/claims.log results/benchmarks/claims.tsv \
	    results/logs/report.log results/benchmarks/report.tsv \
	    results/logs/*/tables.log results/logs/*/figures.log results/benchmarks/*/tables.tsv results/benchmarks/*/figures.tsv
