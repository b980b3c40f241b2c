# Shortcuts; each target is one command you can also type yourself.
PY ?= python3

.PHONY: install quick paper test test-fast lint rulegraph config-table

install:  ## PyTorch first (the CPU wheel), then this package with test and SLURM extras
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev,slurm]"

quick: install  ## the main job: quick config, every figure, on CPU
	snakemake --cores 2

paper:  ## paper scale (docs/running.md, docs/slurm.md for a cluster)
	snakemake --cores all --configfile config/paper.yaml

lint:  ## the field's habits: ruff, snakefmt, snakemake --lint, current rule graph
	ruff check src tests bench tools
	snakefmt --check Snakefile workflow
	snakemake --lint
	$(PY) tools/rulegraph.py --check

test: lint  ## lint, then the whole test suite
	$(PY) -m pytest -q --durations=10

test-fast:  ## the developer loop: every test not marked slow (no Snakemake run; tests/README.md)
	$(PY) -m pytest -q -m "not slow"

rulegraph:  ## rewrite the rule graph in docs/running.md
	$(PY) tools/rulegraph.py

config-table:  ## rewrite config/README.md from the schema
	$(PY) tools/config_table.py
