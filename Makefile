# Development and CI entry points. `make test` is what .ci/run runs.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
PYTEST_ARGS ?=

PG_HOST := 127.0.0.1
PG_PORT := 5432
REDIS_PORT := 6379
WAIT_SECONDS := 60
# Services that `make test` found down and started; it stops them again at the end.
STARTED := .services-started

# The oldest supported Django, tested without the end-to-end and fault tests (the newest
# supported release is what .venv has).
OLDEST_DJANGO := Django>=4.2,<5
VENV_OLDEST := .venv-django42
STAMP_OLDEST := $(VENV_OLDEST)/.installed

# The newest Django, on the newest Python it supports, with the whole suite (end-to-end and
# fault tests included). Django 6.x needs Python 3.12+: pyenv provides it here.
NEWEST_DJANGO := Django>=6.1,<6.2
NEWEST_PYTHON ?= env PYENV_VERSION=3.13.0 python3.13
VENV_NEWEST := .venv-django61
STAMP_NEWEST := $(VENV_NEWEST)/.installed

.PHONY: venv services postgres redis stop-started lint test test-postgres test-sqlite test-oldest-django test-newest-django demo clean

venv: $(STAMP)

# Re-installs when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

$(STAMP_OLDEST): pyproject.toml
	test -x $(VENV_OLDEST)/bin/python || $(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install --disable-pip-version-check -q '$(OLDEST_DJANGO)' -e '.[test]'
	touch $@

$(STAMP_NEWEST): pyproject.toml
	test -x $(VENV_NEWEST)/bin/python || $(NEWEST_PYTHON) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install --disable-pip-version-check -q '$(NEWEST_DJANGO)' -e '.[test]'
	touch $@

services: postgres redis

postgres:
	@if ! pg_isready -q -h $(PG_HOST) -p $(PG_PORT); then \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  mkdir -p $(STARTED) && touch $(STARTED)/postgres; \
	fi
	@for _ in $$(seq $(WAIT_SECONDS)); do \
	  pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && exit 0; sleep 1; \
	done; echo "PostgreSQL is not up on $(PG_HOST):$(PG_PORT)" >&2; exit 1

redis:
	@if ! redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $(REDIS_PORT) --save "" \
	    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; \
	  mkdir -p $(STARTED) && touch $(STARTED)/redis; \
	fi
	@for _ in $$(seq $(WAIT_SECONDS)); do \
	  [ "$$(redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping 2>/dev/null)" = PONG ] && exit 0; \
	  sleep 1; \
	done; echo "Redis is not up on 127.0.0.1:$(REDIS_PORT)" >&2; exit 1

stop-started:
	@if [ -f $(STARTED)/postgres ]; then \
	  echo "stopping PostgreSQL (started by make)"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main stop || true; \
	fi
	@if [ -f $(STARTED)/redis ]; then \
	  echo "stopping Redis (started by make)"; \
	  redis-cli -h 127.0.0.1 -p $(REDIS_PORT) shutdown nosave >/dev/null 2>&1 || true; \
	fi
	@rm -rf $(STARTED)

lint: venv
	$(BIN)/ruff check .

test-postgres: venv services
	DATA_EXCHANGE_TEST_DB=postgres $(PYTEST) $(PYTEST_ARGS)

test-sqlite: venv services
	DATA_EXCHANGE_TEST_DB=sqlite $(PYTEST) $(PYTEST_ARGS)

# On PostgreSQL: Django 4.2's SQLite backend gives positive integer fields no lower bound, so a
# negative quantity would pass the preview there and fail only at import.
test-oldest-django: $(STAMP_OLDEST) services
	DATA_EXCHANGE_TEST_DB=postgres $(VENV_OLDEST)/bin/python -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

test-newest-django: $(STAMP_NEWEST) services
	DATA_EXCHANGE_TEST_DB=postgres $(VENV_NEWEST)/bin/python -m pytest $(PYTEST_ARGS)

# Every step runs even if an earlier one fails; the target fails if any did. pytest exits
# non-zero on a failure and (exit 5) when it collects no test.
test: venv services
	@failed=""; \
	$(MAKE) --no-print-directory lint || failed="$$failed lint"; \
	$(MAKE) --no-print-directory test-postgres || failed="$$failed postgres"; \
	$(MAKE) --no-print-directory test-sqlite || failed="$$failed sqlite"; \
	$(MAKE) --no-print-directory test-oldest-django || failed="$$failed django-4.2"; \
	$(MAKE) --no-print-directory test-newest-django || failed="$$failed django-6.1"; \
	$(MAKE) --no-print-directory stop-started; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi; \
	echo "make test: lint, PostgreSQL, SQLite, Django 4.2 and Django 6.1 runs passed"

demo: venv
	$(BIN)/python -m demo.run

clean:
	rm -rf $(VENV) $(VENV_OLDEST) $(VENV_NEWEST) .pytest_cache .ruff_cache tests/.media tests/data_exchange_private tests/.test*.sqlite3*
