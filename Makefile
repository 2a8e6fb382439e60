# feedgate: `make demo` runs the main job on the embedded default, `make test` passes the tests.
# Both create .venv (Python >= 3.11) when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint demo bench clean peers

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint peers
	$(BIN)/pytest -q

# Peers for interop tests (cabby, OpenTAXII, python-stix with old pins) in .cache/peers/venv:
# built once, rebuilt when tests/data/peers/requirements.txt changes. A failed build warns loudly
# and the tests that need it skip (fail under FEEDGATE_REQUIRE_ALL=1).
peers: venv
	$(BIN)/python tests/peers.py build

# The whole system on the embedded default (Ctrl-C stops it): a demo hub, a source on it, one
# poll, then the scheduler and the REST API.
demo: venv
	$(BIN)/feedgate up

bench: venv
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/stix_extract.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
