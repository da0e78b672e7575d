# Two entry points, each self-contained: it makes the virtual environment and installs what it needs.
#   make run   - run the zoo's stacked LSTM: print its program IR, run it, check it against NumPy
#   make test  - the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/fractal run stacked_lstm --config small --print-ir

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
