# The two commands the README promises: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,trainer,dlc,pai,paiflow,flaml,tuners,report]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The edit loop: everything but the real-NNI experiments (`make test`, and so CI, runs those too).
test-fast: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not e2e"

# `make demo`: the local begin example end to end (see docs/quickstart.md).
DEMO_DATA := demo-data
DEMO_EXP := demo-exp

demo: install
	$(VENV)/bin/hpo-tools make-data $(DEMO_DATA)
	$(PY) examples/search/local_easyrec/demo.py --work-dir $(DEMO_EXP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
