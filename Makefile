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

.PHONY: setup test web-test browser lint demo bench bench-quick fuzz clean

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

# The web viewer's tests need Node (its codec tests: node --test) and Debian's Chromium (the
# end-to-end browser tests in tests/web/test_browser.py); each is installed only when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y

browser:
	@command -v chromium >/dev/null 2>&1 || { $(APT_INSTALL) chromium; }

web-test:
	@command -v node >/dev/null 2>&1 || { $(APT_INSTALL) nodejs; }
	node --test tests/web/*.test.mjs

test: setup browser web-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

# Coverage-guided fuzzing of every decoder and the session (fuzz/, Atheris); FUZZ_SECONDS is shared
# by the targets, run one after another at low priority.  Corpus and crashes: fuzz/corpus, fuzz/artifacts.
FUZZ_SECONDS ?= 600
fuzz: setup
	nice -n 19 $(BIN)/python -m fuzz all --seconds $(FUZZ_SECONDS)

demo: setup
	$(BIN)/python -m moq.demo

# The benchmark harness (bench/, issue 9): our relay and the moq-rs relay driven by moq-rs clients in
# separate processes, ending with a 5-minute soak of our relay (about 9 minutes in all; `python -m bench
# --soak SECONDS` runs the soak alone); a markdown table on stdout, JSON and a PNG chart in bench/results/.
BSTAMP := $(VENV)/.bench-installed
$(BSTAMP): $(STAMP) $(ISTAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(IVENV)/bin/python -m pip install --quiet 'uvloop>=0.19'
	touch $(BSTAMP)

bench: setup $(BSTAMP)
	$(BIN)/python -m bench

bench-quick: setup $(BSTAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) $(IVENV) .pytest_cache .ruff_cache .hypothesis
