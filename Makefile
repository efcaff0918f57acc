# make run [DATA=/path/to/beir/folder] [CONFIG=configs/<preset>.yaml] [SEEDS=13,7,21] [CORES=all]
#                                                    the default experiment (config.yaml, a preset over it)
# make test                                          the test suite
# make bench                                         SciFact benchmark -> benchmarks/results/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
DATA ?=
CONFIG ?=
SEEDS ?=
SNAKEMAKE_ARGS ?=

.PHONY: run test bench clean-results

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# --cache: the teacher's work (corpus encoding, index, scores) is reused by later experiments (README)
# CONFIG: config files merged over config.yaml, in order (config.yaml named too: the Snakefile's own
# `configfile:` is read from the working directory, which SNAKEMAKE_ARGS=--directory may move)
# SEEDS: the experiment once per seed (`seeds`), in the one --config (a second --config replaces the first)
run: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --cache --show-failed-logs \
	    $(if $(CONFIG),--configfile $(CURDIR)/config.yaml $(abspath $(CONFIG))) \
	    $(if $(DATA)$(SEEDS),--config $(if $(DATA),data_dir=$(abspath $(DATA))) $(if $(SEEDS),seeds=[$(SEEDS)])) \
	    $(SNAKEMAKE_ARGS)

# --durations: the slowest tests, what to cut when CI nears its 25 minutes. -n: pytest-xdist workers (a
# workflow test is mostly process start-up, which the other worker fills); worksteal: a worker that runs out
# takes tests queued for the other (plain load left one worker alone with the long tests for minutes at the
# end: 1,445 s of pytest in CI); the one costly shared fixture is built once for both (one_iteration_run)
TEST_WORKERS ?= 2
test: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -rs --durations=20 -n $(TEST_WORKERS) --dist worksteal tests

bench: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH bash benchmarks/scifact.sh

clean-results:
	rm -rf results .snakemake
