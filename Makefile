# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
# (`make demo` shows the pipeline end to end in one go.)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
LOCK   := requirements/lock.txt

.PHONY: install lock audit run demo test test-fast chaos chaos-soak lint format services selftest bench clean

install: $(STAMP)

## Every dependency (runtime, test, dev, and the build backend of the editable install) comes
## from the hashed lock: a changed or substituted file on the index fails the install.
## `pip check` fails when pyproject.toml asks for something the lock lacks (run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $(STAMP)

## Regenerate requirements/lock.txt from pyproject.toml (pip-compile --generate-hashes);
## `make lock ARGS=--upgrade` (or ARGS="--upgrade-package NAME") moves the pins.
lock: install
	VENV=$(VENV) bash scripts/lock.sh $(ARGS)

## Known vulnerabilities (PyPI's advisory data) in every locked package; fails on any finding.
audit: install
	$(PY) scripts/audit.py $(LOCK)

## Run the whole connector on the embedded default (SQLite, no servers, sandbox for Zoho and Concur).
run: install
	$(VENV)/bin/connector run

## A vendor, a bill and an approved expense report through the real pipeline, then a table
## (starts its own embedded stack in a temporary directory, or reuses a running `make run`).
demo: install
	$(VENV)/bin/connector demo

## Set up and run the whole test suite (starts local PostgreSQL/Redis if installed but stopped).
test: install
	@bash scripts/services.sh || true
	$(PY) -m pytest -m "not chaos"

## Unit tests only: no services, no subprocess workers.
test-fast: install
	$(PY) -m pytest -m "not slow and not chaos" --deselect tests/tasks

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

services:
	bash scripts/services.sh

selftest: install
	$(VENV)/bin/connector selftest

## Benchmarks (issue #9): needs PostgreSQL and redis-server; writes bench/results/*.json and
## docs/benchmarks.md. About 30 minutes on 2 cores; `python -m bench.run --quick --only B1` for a subset.
bench: install
	@bash scripts/services.sh || true
	$(PY) -m bench.run

## Fault-injection suite (issue #9, docs/chaos.md): the whole stack killed, cut off, throttled,
## revoked and flooded, plus property-based fuzzing of the receivers and mappings. < 10 minutes.
chaos: install
	@bash scripts/services.sh || true
	$(PY) -m pytest -m chaos --durations=15 tests/chaos

## The chaos suite N times with a fresh CHAOS_SEED each (issue #21): pass rate per scenario as a
## Markdown table, printed and written to bench/results/chaos-soak-*.md. `make chaos-soak N=10`
## takes N times `make chaos`; a failing seed is replayed with `CHAOS_SEED=<seed> make chaos`.
N ?= 10
chaos-soak: install
	@bash scripts/services.sh || true
	$(PY) -m tests.chaos.soak --runs $(N)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
