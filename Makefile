# Two commands do all set-up: `make run` and `make test`. Only python3 (3.11+) and make are needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

LOCK   := requirements.txt requirements-dev.txt
# The lock is pip-tools output with hashes. pip refuses editable installs under --require-hashes, so the
# pinned, hashed dependencies go in first and the project itself follows with --no-deps.
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

.PHONY: install lock run demo test lint bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps -e ./clients/python   # the SDK: mandate-sdk, mandate-mcp-gateway
	touch $(STAMP)

## A checkout set up by `make install` (and so `make test` and `make run`) is a development checkout:
## data/development.env (DEBUG=true, the port) lets `manage.py` and `celery` in any shell use the
## development settings. Written only when absent; `make run` rewrites it with the port it serves on.
## Production installs with pip and never has the file (and the WSGI server never reads it).
DEV_ENV := $${MANDATE_DATA_DIR:-data}/development.env

install: $(STAMP)
	@test -f $(DEV_ENV) || { mkdir -p $${MANDATE_DATA_DIR:-data} && printf 'DEBUG=true\nPORT=%s\n' "$(PORT)" > $(DEV_ENV); }

## make lock: re-resolve requirements*.txt from pyproject.toml, keeping current pins where they still fit
## (make lock LOCK_ARGS=--upgrade moves everything to the newest allowed releases).
## The dev lock is constrained by the runtime one, so both pin the same versions.
lock: install
	$(PIP_COMPILE) --output-file=requirements.txt pyproject.toml
	$(PIP_COMPILE) --extra=dev --constraint=requirements.txt --output-file=requirements-dev.txt pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $(STAMP)

## make run: migrate, then serve the console on 127.0.0.1:$(PORT) with a Celery worker and beat.
run: install
	@printf 'DEBUG=%s\nPORT=%s\n' "$${DEBUG:-true}" "$(PORT)" > $(DEV_ENV)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py createcachetable
	DEBUG=$${DEBUG:-true} PORT=$(PORT) $(BIN)/python manage.py runall

## make demo: (with make run going, in another shell) demo people and data; a second run changes nothing.
demo: install
	$(BIN)/python manage.py seed_demo

## make test: the whole suite (SQLite by default; DATABASE_URL selects PostgreSQL).
test: install
	MANDATE_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: what CI checks besides the tests (formatting, lint rules, types).
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	MANDATE_TESTING=1 $(BIN)/mypy

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
