"""The taxi example end to end on its real (bundled) data: the model reaches the quality a user expects."""
import pytest

from tests.support.jobs import job_args, run_job
from tests.support.paths import TAXI_CONFIG

pytestmark = pytest.mark.e2e


def test_taxi_reaches_auc_093_and_is_pushed(tmp_path):
    code, manifest = run_job(*job_args(tmp_path, "taxi", config=TAXI_CONFIG))
    assert code == 0, manifest.get("error")
    assert manifest["metrics"]["auc"] >= 0.93
    assert manifest["blessed"] is True and manifest["pushed_model_dir"]
    counts = manifest["counts"]
    assert counts["read"] == 14975 and counts["dead_letter"] == 0
    assert counts["read"] == sum(counts["splits"].values())
    # TFDV finds real, expected anomalies here (eval companies unseen in train); policy warn records them
    assert any(a["feature"] == "company" for a in manifest["anomalies"])
