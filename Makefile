# `make test` installs everything it needs into .venv (from scratch on a fresh clone), then runs
# the linters, the type checker and the test suite. `make run` starts the gateway.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test run lint bench

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

run: $(BIN)/.installed
	$(BIN)/polyrelay serve

# The benchmark: installs nginx, wrk and hey (Debian) when missing; results in bench/results/.
bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet psutil httpx-aiohttp
	$(BIN)/python -m bench
