# beam_ml: `make demo` sets up and runs the penguin example end to end; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3.10 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test benchmark clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v in ((3, 10), (3, 11)) else \
	  "beam_ml needs Python 3.10 or 3.11 (found %d.%d): TFDV 1.16 has no wheels for 3.12+. " \
	  "Install python3.11 and run: make setup PYTHON=python3.11" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

demo: setup
	$(PY) -m jobs.train_pipeline --config examples/penguins/config.yaml

test: setup
	$(PY) -m pytest -q tests

benchmark: setup
	$(PY) -m benchmarks.ingest_stats

clean:
	rm -rf runs serving .pytest_cache
