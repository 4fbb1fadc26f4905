# Two commands set everything up on a fresh machine (Python 3.10+, make):
#   make demo   export the embedded default model, run a semantic search, print a latency table
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUNDLE := bundles/all-MiniLM-L6-v2

# The release pair before the current one (transformers 4, sentence-transformers 5), for the export
# tests: `make test` runs what a fresh install resolves to, `make test-compat` this older pair.
COMPAT := .venv-compat
COMPAT_PINS := transformers==4.57.6 sentence-transformers==5.7.0

.PHONY: demo test test-compat lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build; an unpinned torch pulls GBs of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[export,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/fusembed export all-MiniLM-L6-v2 $(BUNDLE) --overwrite
	$(BIN)/fusembed search $(BUNDLE) --query "How many people live in London?" --docs examples/london.txt
	$(BIN)/python benchmarks/latency.py $(BUNDLE)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

$(COMPAT)/.installed: pyproject.toml
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/pip install --quiet --upgrade pip
	$(COMPAT)/bin/pip install --quiet torch==2.13.0
	$(COMPAT)/bin/pip install --quiet -e '.[export,dev]' $(COMPAT_PINS)
	touch $@

test-compat: $(COMPAT)/.installed
	$(COMPAT)/bin/python -m pytest tests/export

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m tests.typecheck

clean:
	rm -rf $(VENV) $(COMPAT) bundles
