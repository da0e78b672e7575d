# Two entry points, each self-contained: it makes the virtual environment and installs what it needs.
#   make run   - trace an example model, print its program IR, run it and check it against NumPy
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
	$(PY) examples/stacked_rnn.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
