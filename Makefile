# The two commands of the README, plus the developer's shortcuts.
PYTHON ?= python3
VENV ?= .venv

.PHONY: run scan-samples test dev lint docs clean

SAMPLES ?= donjon-samples

## run: set up a virtual environment and run Donjon's main job on embedded defaults:
## a guarded ML lifecycle end to end (exit 0 when every expected detection happened)
run: $(VENV)/.installed
	$(VENV)/bin/donjon quickstart

## scan-samples: write a folder of benign and malicious model files, then scan it
scan-samples: $(VENV)/.installed
	$(VENV)/bin/donjon samples $(SAMPLES)
	$(VENV)/bin/donjon scan $(SAMPLES) || [ $$? -eq 1 ]

$(VENV)/.installed: pyproject.toml
	@echo "==> creating a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip"
	$(VENV)/bin/python -m pip install -q --upgrade pip
	@echo "==> installing Donjon from this checkout with the [quickstart] extra (scikit-learn,"
	@echo "    cleanlab, pyarrow, FastAPI, uvicorn, cedarpy, cryptography): about a minute"
	$(VENV)/bin/python -m pip install -q --progress-bar on -e '.[quickstart]'
	@echo "==> installed; running: donjon quickstart"
	touch $@

## test: what CI runs: fresh venv, lint, types, layering, the whole test suite
test:
	bash .ci/run

## dev: a development environment with the test extras
dev:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $(VENV)/.installed

## lint: the quick gates, in the development environment
lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/lint-imports

## docs: regenerate the generated docs pages
docs:
	$(VENV)/bin/donjon rules markdown > docs/rules.md

clean:
	rm -rf $(VENV) .venv-ci build dist .pytest_cache .mypy_cache .ruff_cache $(SAMPLES)
