# Developer entry points. `make install` once, then `make demo` / `make test`.
# The first Python 3.11+ found (pyproject's requires-python refuses an older one at install).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.14 python3; do command -v $$p >/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# The 8.19 client cannot share a venv with the 9.x one: it lives in its own folder, put on
# PYTHONPATH only by the test that drives it.
ES8_CLIENT := $(VENV)/es-client-8

.PHONY: install test lint demo bench clean

install: $(BIN)/reconciler $(ES8_CLIENT)

$(BIN)/reconciler: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# A venv made before the distribution was renamed (issue 10) holds it as `reconciler` too.
	$(BIN)/pip uninstall --quiet --yes reconciler 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

$(ES8_CLIENT): | $(BIN)/reconciler
	$(BIN)/pip install --quiet --target $(ES8_CLIENT) 'elasticsearch>=8.19,<8.20'

test: install
	$(BIN)/pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q tests/test_architecture.py

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
