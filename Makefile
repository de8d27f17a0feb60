# Every target creates .venv itself; nothing needs to be installed first but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BENTOML_DO_NOT_TRACK := True

.PHONY: install demo test test-fast lint format bench clean

# constraints.txt is the tested set of every dependency (see docs/testing.md): the install
# resolves exactly those versions, so CI runs what was tested. --no-compile: byte-compiling
# the ~37,000 modules of the dependencies took a minute of CPU; Python compiles the few
# hundred it imports when it first imports them.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -c constraints.txt -e '.[dev,frameworks]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m reconciler.demo

# The whole suite on every core (pytest-xdist); tests that share a built or served Bento
# carry an xdist_group mark and run in one worker (--dist loadgroup).
PYTEST_XDIST := -n auto --dist loadgroup

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) --durations=15

# Everything but the tests that build or serve a Bento (marked slow).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_XDIST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .modelops .pytest_cache .ruff_cache
