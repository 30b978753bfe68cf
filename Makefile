# One entry point. Every target sets up what it needs first (a .venv with the package installed editable),
# so each works on a fresh clone:
#   make demo    the main job: run the quickstart notebook headless (on the bundled simulator when no
#                ANTHROPIC_API_KEY is set) and write out/01_quickstart.ipynb and out/01_quickstart.html
#   make test    lint, type-check and run the whole test suite (what CI runs)
#   make test-fast  the quick suite (pytest -m "not slow") for everyday work; CI also runs it on the oldest
#                and newest supported Pythons: make test-fast PYTHON=python3.10 VENV=.venv-3.10
#   make bench   run the benchmarks and print their tables
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HASH := $(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo notebooks test test-fast lint typecheck pytest bench lab clean

$(VENV)/.run-$(HASH):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks]'
	touch $@

$(VENV)/.dev-$(HASH):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-$(HASH) $(VENV)/.test-$(HASH)

# Only what the quick suite needs (no JupyterLab, browser driver or linters): quicker to build on another Python.
$(VENV)/.test-$(HASH):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench-$(HASH): $(VENV)/.dev-$(HASH)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

demo: $(VENV)/.run-$(HASH)
	$(BIN)/python scripts/run_notebooks.py notebooks/01_quickstart.ipynb --out out

notebooks: $(VENV)/.run-$(HASH)
	$(BIN)/python scripts/run_notebooks.py notebooks/*.ipynb --out out

# --allow-root only when running as root (a container), where Jupyter refuses to start without it
lab: $(VENV)/.run-$(HASH)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

lint: $(VENV)/.dev-$(HASH)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

typecheck: $(VENV)/.dev-$(HASH)
	$(BIN)/mypy

pytest: $(VENV)/.dev-$(HASH)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

test-fast: $(VENV)/.test-$(HASH)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.bench-$(HASH)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache build dist out
