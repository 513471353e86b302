# Every target works on a fresh machine: `make test` installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# moq-rs (the independent peer for interop/) installs a package named `moq` too, so it
# gets its own venv and runs as separate processes.
IVENV := .venv-interop
ISTAMP := $(IVENV)/.installed
MOQRS := moq-rs==0.5.1

.PHONY: setup test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(ISTAMP):
	test -x $(IVENV)/bin/python || $(PY) -m venv $(IVENV)
	$(IVENV)/bin/python -m pip install --quiet '$(MOQRS)'
	touch $(ISTAMP)

setup: $(STAMP) $(ISTAMP)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

demo: setup
	$(BIN)/python -m moq.demo

bench: setup
	$(BIN)/python -m tests.bench.relay_fanout --subscribers 10 --rate 1000
	$(BIN)/python -m tests.bench.relay_fanout --subscribers 10 --rate 1000 --transport https

clean:
	rm -rf $(VENV) $(IVENV) .pytest_cache .ruff_cache .hypothesis
