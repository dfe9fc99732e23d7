"""The package's layers (`.importlinter`): launch on top; train, predict and stream beside each other and never
importing one another; ingest and model below them; then config; core at the bottom. The library never imports the
entry points, user modules or tools built on it."""
import os
import subprocess
import sys

from tests.support.paths import ROOT


def test_the_layers_contract_holds():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    proc = subprocess.run([lint_imports, "--config", os.path.join(ROOT, ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in proc.stdout, proc.stdout[-2000:]


def test_the_configs_detector_names_are_the_catalogs():
    from beam_ml.config.detect import DETECTORS
    from beam_ml.stream.detectors.catalog import ONLINE_DETECTORS
    assert set(DETECTORS) == {"model", *ONLINE_DETECTORS}


def test_every_database_scheme_has_a_driver():
    from beam_ml.config.source import DATABASE_SCHEMES
    from beam_ml.ingest.sql import DRIVERS
    assert set(DATABASE_SCHEMES) == set(DRIVERS)
