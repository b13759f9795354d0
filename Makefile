# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/mailintake serve

test: $(BIN)/.installed
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.smtp_throughput
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.web_list
	$(BIN)/python -m bench.filelink
	$(BIN)/python -m bench.handoff
	$(BIN)/python -m bench.web_load
	$(BIN)/python -m bench.two_nodes
