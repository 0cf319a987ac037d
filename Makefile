# The README's commands. `make run` starts the service on an embedded default with a demo fleet;
# `make test` runs lint, the schema check and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ADDR ?= 127.0.0.1:8000
# Simulated fleet engine: auto (real when a local dockerd answers), fake, or real (starts dockerd).
ENGINE ?= auto

.PHONY: run test lint schema bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	if [ "$(ENGINE)" = real ]; then bash simfleet/dockerd.sh start; fi
	$(BIN)/python manage.py quickstart --addr $(ADDR) --engine $(ENGINE)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

schema: $(BIN)/.installed
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

# pytest exits 5 when it collects no tests: that is a failure too.
test: lint schema
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_decide.py
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_rollout.py
	$(BIN)/python bench/bench_overview.py
	$(BIN)/python bench/bench_gates.py
	$(BIN)/python bench/bench_sync.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
