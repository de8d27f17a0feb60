# Every target creates .venv itself; nothing needs to be installed first but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BENTOML_DO_NOT_TRACK := True
# Python writes .pyc files (see the install recipe); unexport reaches every subprocess.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test test-fast suite suite-fast lint bytecode format bench clean

# constraints.txt is the tested set of every dependency (see docs/testing.md): the install
# resolves exactly those versions, so CI runs what was tested. uv installs them (about 5 s
# with its cache on the same file system, which it hard-links from, and 25 s when it must
# copy; pip takes 2 min; same set: `uv pip freeze` equals the constraints); when uv cannot
# be installed, pip does the same install.
# No byte-compiling at install: the test targets let Python write .pyc files as modules are
# first imported (this machine sets PYTHONDONTWRITEBYTECODE, under which every test process,
# each `bentoml serve` and each `python -m reconciler` compiled what it imported again), so
# only the modules the suite imports are compiled, once (docs/testing.md, "Measured times").
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	if $(BIN)/pip install --quiet -c constraints.txt uv && \
	   $(BIN)/uv pip install --python $(BIN)/python --quiet \
	     -c constraints.txt -e '.[dev,frameworks]'; then :; else \
	  echo "uv unavailable: installing with pip" >&2 && \
	  $(BIN)/pip install --quiet --upgrade pip && \
	  $(BIN)/pip install --quiet --no-compile -c constraints.txt -e '.[dev,frameworks]'; \
	fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m reconciler.demo

# The whole suite on every core (pytest-xdist). --dist loadfile keeps each test file in one
# worker, so a module's built Bento is built once; the files that share the served Bento
# go to one worker together (tests/conftest.py), so it is started once per run. (--dist
# loadgroup cannot do that here: with pytest 9.2, xdist 3.8 renames item._nodeid, which
# pytest no longer reads.)
# One worker more than there are cores: part of the suite's wall time is spent waiting
# (for `bentoml serve` to start, for a canary's analysis interval, for a worker that must
# time out), which the extra worker fills; a second extra one cost more CPU (each worker
# collects the whole suite, and four of them with their servers contend for two cores)
# than it filled: measured in docs/testing.md.
# --no-loadscope-reorder: files go out in collection order, the slow ones first
# (tests/conftest.py), rather than xdist's most-tests-first.
JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
PYTEST_XDIST := -n $(JOBS) --dist loadfile --no-loadscope-reorder

# First the .pyc files of what the suite imports (one process, before the workers start),
# then the linters beside the suite: they run while its workers wait on servers.
test: $(STAMP)
	$(MAKE) --no-print-directory bytecode
	$(MAKE) --no-print-directory -j2 lint suite

suite: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) --durations=15

# Everything but the tests that build or serve a Bento (marked slow).
test-fast: $(STAMP)
	$(MAKE) --no-print-directory bytecode
	$(MAKE) --no-print-directory -j2 lint suite-fast

suite-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_XDIST)

# ruff, the format check and the import layers (.importlinter: docs/README.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports

# The .pyc files of the modules the suite imports, written by one process before the
# workers start (they each compiled them at the same time: tests/support/bytecode.py).
bytecode: $(STAMP)
	$(BIN)/python tests/support/bytecode.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .modelops .pytest_cache .ruff_cache
