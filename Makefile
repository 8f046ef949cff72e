# `make run`: set up .venv with the pinned stack, then run the default pipeline.
# `make test`: same set-up, the Snakefile formatting check (snakefmt), then the test suite
# (what .ci/run calls). `make format` rewrites the Snakefile and workflow/rules/*.smk in place.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint format report-html benchmark push clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The data stage first: after a data rerun Snakemake leaves out the jobs below it in the
# same invocation (snakemake/snakemake#4166), so the second call plans them.
run: setup
	$(BIN)/snakemake --cores all --workflow-profile workflow/profiles/default prepared_data
	$(BIN)/snakemake --cores all --workflow-profile workflow/profiles/default

# The Snakefile and every rule file as snakefmt writes them (fails on any difference).
SNAKEFILES := Snakefile workflow tests/toy_study

test: setup lint
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/snakefmt --check $(SNAKEFILES)

format: setup
	$(BIN)/snakefmt $(SNAKEFILES)

report-html: setup
	$(BIN)/snakemake --report reports/report.html

benchmark: setup
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/noop_rerun.py
	$(BIN)/python benchmarks/dataset_distillation_speed.py
	$(BIN)/python benchmarks/mtard_epoch_cost.py
	$(BIN)/python benchmarks/autoattack_cost.py
	$(BIN)/python benchmarks/max_pool_cost.py
	$(BIN)/python benchmarks/allocator_cost.py
	$(BIN)/python benchmarks/tgeo_kd_epoch_cost.py
	$(BIN)/python benchmarks/epoch_logging.py
	$(BIN)/python benchmarks/continual_cost.py
	$(BIN)/python benchmarks/warm_start.py
	$(BIN)/python benchmarks/pipeline_cost.py

# Version data/ and this profile's checkpoints with DVC and push them to the default remote.
push: setup
	$(BIN)/dvc add data checkpoints
	$(BIN)/dvc push

clean:
	rm -rf results checkpoints logs mlflow.db mlflow.db.lock mlartifacts .snakemake
