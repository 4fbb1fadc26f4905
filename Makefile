# Two commands set everything up on a fresh machine (Python 3.10+, make):
#   make demo   export the embedded default model, run a semantic search, print a latency table
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUNDLE := bundles/all-MiniLM-L6-v2

.PHONY: demo test lint clean

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

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m tests.typecheck

clean:
	rm -rf $(VENV) bundles
