# Two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint typecheck openapi openapi-lint bench bench-http load migrate seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	@# Fides's own models parse the fideslang export in the tests (proof that Fides imports it).
	@# Without its dependencies: it pins pydantic below the version the service runs on, and
	@# the tests must run on the service's pydantic (they pass on it).
	$(BIN)/pip install --quiet --no-deps "fideslang>=3.1.4,<4"
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/spix-dsr migrate
	$(BIN)/spix-dsr seed
	@# The worker (webhook deliveries, scheduled work) runs beside the API and stops with it.
	$(BIN)/spix-dsr worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/spix-dsr serve --host 0.0.0.0 --port $(PORT)

migrate: $(VENV)/.installed
	$(BIN)/spix-dsr migrate

seed: $(VENV)/.installed
	$(BIN)/spix-dsr seed

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

openapi: $(VENV)/.installed-test
	$(BIN)/spix-dsr openapi

openapi-lint: $(VENV)/.installed-test
	$(BIN)/spix-dsr openapi --check
	PYTHON=$(BIN)/python openapi/lint.sh

# SQLite always; PostgreSQL too when SPIX_DSR_TEST_POSTGRES_URL is set (.ci/run sets it).
test: lint typecheck openapi-lint
	$(BIN)/pytest -n 2

bench: $(VENV)/.installed-test
	$(BIN)/pytest tests/benchmarks -s -q

# The hot paths under wrk against a bare FastAPI GET in the same run (tests/benchmarks/http).
# SPIX_DSR_BENCH_HTTP_RECORDS=1000000 for the full size; PostgreSQL via SPIX_DSR_TEST_POSTGRES_URL.
bench-http: $(VENV)/.installed-test
	$(BIN)/pytest tests/benchmarks/http -s -q

# The end-to-end load model on PostgreSQL (SPIX_DSR_TEST_POSTGRES_URL): 1,000,000 records and
# 1,000 requests unless SPIX_DSR_LOAD_RECORDS / SPIX_DSR_LOAD_REQUESTS say otherwise.
load: $(VENV)/.installed-test
	$(BIN)/python -m tests.benchmarks.load_model

clean:
	rm -rf $(VENV) openapi/node_modules .spix-dsr spix-dsr.db spix-dsr.db-wal spix-dsr.db-shm
