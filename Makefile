# `make test` installs everything it needs into .venv (from scratch on a fresh clone), then runs
# the linters, the type checker and the test suite. `make run` starts the gateway.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test run lint bench bench-peers lock image-test fuzz test-tools

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint test-tools
	$(BIN)/pytest

# The rate-limit tests start a real redis-server (Debian's package): installed when missing, as root.
test-tools:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq redis-server; } \
		|| { echo "make test needs redis-server: apt-get install redis-server" >&2; exit 1; }
# The gateways store's tests start a real PostgreSQL (Debian's package, initdb into a temporary directory).
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq postgresql; } \
		|| { echo "make test needs PostgreSQL: apt-get install postgresql" >&2; exit 1; }

run: $(BIN)/.installed
	$(BIN)/polyrelay serve

# The benchmark: installs nginx, wrk and hey (Debian) when missing; results in bench/results/.
bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet psutil httpx-aiohttp
	$(BIN)/python -m bench

# The peer row (not in CI): LiteLLM's proxy, pinned, in a venv of its own, against the same mock.
bench-peers: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet psutil httpx-aiohttp
	$(BIN)/python -m bench.peers

# The image's dependencies, locked with their hashes for Python 3.11+ on every platform:
# requirements.lock (pyproject's dependencies) and requirements-build.lock (its build backend).
# Run after changing either list; the Dockerfile installs from these files only.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock'
lock: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_COMPILE) pyproject.toml --output-file requirements.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) - --output-file requirements-build.lock

# schemathesis over openapi.yaml against a real gateway and the fake providers: fails on any 5xx
# of the gateway's own (about two minutes; not part of `make test`).
fuzz: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet 'schemathesis>=4,<5'
	$(BIN)/python -m tests.fuzz_gateway --max-examples $${FUZZ_EXAMPLES:-20}

# Builds the image and runs it read-only as an arbitrary uid (needs Docker, or root to start one;
# not part of `make test`). See deploy/docker-test.sh.
image-test:
	bash deploy/docker-test.sh
