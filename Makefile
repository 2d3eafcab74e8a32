# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates or updates .venv from the project's own files, then runs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.quickstart.starter

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy agents tools workflows server
	$(BIN)/python -m pytest -ra

clean:
	rm -rf $(VENV) .chamberlain
