# beam_ml: `make demo` sets up and runs the penguin example end to end; `make test` runs the test suite (all of it,
# as CI does); `make test-fast` runs the unit tests that need no server and no trained model.
PYTHON ?= $(shell command -v python3.11 || command -v python3.10 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

EMU_VENV := .venv-emu
EMU_STAMP := $(EMU_VENV)/.installed

KFP_VENV := .venv-kfp
KFP_STAMP := $(KFP_VENV)/.installed

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

TFJS_VENV := .venv-tfjs
TFJS_STAMP := $(TFJS_VENV)/.installed
TFJS_PAGE := tests/support/tfjs
TFJS_NPM_STAMP := $(TFJS_PAGE)/node_modules/.installed

.PHONY: setup emulators kfp airflow tfjs demo test test-fast benchmark clean

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

# The BigQuery and GCS emulators the tests start, in their own venv (bqemulator needs protobuf/grpcio versions that
# Beam rejects). DuckDB's extensions come from wheels: bqemulator would otherwise download them at start.
emulators: $(EMU_STAMP)

$(EMU_STAMP): tests/support/requirements-emulators.txt
	$(PYTHON) -m venv $(EMU_VENV)
	$(EMU_VENV)/bin/python -m pip install --quiet -r tests/support/requirements-emulators.txt
	mkdir -p $(EMU_VENV)/duckdb-home
	HOME=$(abspath $(EMU_VENV))/duckdb-home $(EMU_VENV)/bin/python -c \
	  "from duckdb_extensions import import_extension; import_extension('spatial'); import_extension('avro')"
	touch $(EMU_STAMP)

# Kubeflow Pipelines' SDK (`python -m beam_ml.kfp`) in its own venv: kfp 2.14+ needs a protobuf that Beam rejects
# (requirements-kfp.txt says which). beam_ml.kfp needs only kfp: it runs from the checkout, and its components run
# the jobs with the main venv's interpreter (locally) or the image's.
kfp: $(KFP_STAMP)

$(KFP_STAMP): requirements-kfp.txt setup.py
	$(PYTHON) -m venv $(KFP_VENV)
	$(KFP_VENV)/bin/python -m pip install --quiet -r requirements-kfp.txt
	$(KFP_VENV)/bin/python -m pip check
	# The executor the Flex Template image runs components with (templates/Dockerfile: kfp 2.13.0 beside the
	# package), for the test that runs a compiled component as the image does.
	$(KFP_VENV)/bin/python -m pip install --quiet --no-deps --target $(KFP_VENV)/image-executor kfp==2.13.0 \
	  kfp-pipeline-spec==0.6.0 kfp-server-api==2.4.0 docstring_parser==0.18.0
	touch $(KFP_STAMP)

# Apache Airflow 3 with the Google and Beam providers, for examples/airflow, in its own venv: its pins collide with the
# package's (requirements-airflow.txt says which); its tasks run the jobs with the package venv's interpreter.
airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r requirements-airflow.txt
	$(AIRFLOW_VENV)/bin/python -m pip check
	touch $(AIRFLOW_STAMP)

# The TF.js converter (`python -m beam_ml.model.tfjs`) in its own venv: tensorflowjs needs a packaging version that
# google-cloud-bigquery in the main venv rejects (requirements-tfjs.txt says which).
tfjs: $(TFJS_STAMP)

$(TFJS_STAMP): requirements-tfjs.txt
	$(PYTHON) -m venv $(TFJS_VENV)
	$(TFJS_VENV)/bin/python -m pip install --quiet -r requirements-tfjs.txt
	$(TFJS_VENV)/bin/python -m pip check
	touch $(TFJS_STAMP)

# @tensorflow/tfjs from npm, as its lock file pins it, for the browser test of that export (tests/e2e/test_tfjs.py).
$(TFJS_NPM_STAMP): $(TFJS_PAGE)/package.json $(TFJS_PAGE)/package-lock.json
	npm ci --prefix $(TFJS_PAGE) --no-audit --no-fund --ignore-scripts
	touch $(TFJS_NPM_STAMP)

demo: setup
	$(PY) -m jobs.train_pipeline --config examples/penguins/config.yaml

test: setup emulators kfp airflow tfjs $(TFJS_NPM_STAMP)
	$(PY) -m pytest -q tests

# Under 2 minutes on 2 cores: tests/unit without the tests that start a server or train a model (markers set by
# tests/support/plugin.py from the fixtures a test uses). The layers contract (.importlinter) is one of them.
test-fast: setup
	$(PY) -m pytest -q tests/unit -m "not server and not model"

benchmark: setup
	$(PY) -m benchmarks.ingest_stats

clean:
	rm -rf runs serving .pytest_cache
