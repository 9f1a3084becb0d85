# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv and install privmon into it on first use (and whenever
# pyproject.toml, setup.py or the C parts privacy/*.c, agents/*.c change); the local
# Kafka jars are fetched by Maven on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install clean

$(BIN)/.installed: pyproject.toml setup.py $(wildcard privacy/*.c privacy/*.h agents/*.c)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "privmon needs Python >= 3.11; this is " + sys.version.split()[0] + ". Run with PYTHON=python3.11 (or newer).")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/privmon demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# Fast tests run first; the integration tests then start one real Kafka broker
# for the whole session (tests/conftest.py) and fail if it cannot start. Prometheus,
# Alertmanager and Chromium come from Debian's packages (tests/install_system_packages.sh).
test: $(BIN)/.installed
	bash tests/install_system_packages.sh
	$(BIN)/privmon kafka fetch
	$(BIN)/ruff check .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache
