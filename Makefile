# Two commands do all set-up: `make run` and `make test`. Only python3 (3.11+) and make are needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: migrate, then serve the console on 127.0.0.1:$(PORT) with a Celery worker and beat.
run: install
	@mkdir -p $${MANDATE_DATA_DIR:-data}
	@printf 'DEBUG=%s\nPORT=%s\n' "$${DEBUG:-true}" "$(PORT)" > $${MANDATE_DATA_DIR:-data}/development.env
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} PORT=$(PORT) $(BIN)/python manage.py runall

## make test: the whole suite (SQLite by default; DATABASE_URL selects PostgreSQL).
test: install
	MANDATE_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
