"""A job as a scheduler's step (beam_ml.launch.step): a bad or unknown option ends the step with exit code 2 and a
summary naming the option, before the job starts (no run directory). The step's successful runs are exercised by
the Kubeflow Pipelines test (tests/e2e/test_kfp.py)."""
import json

import pytest

from beam_ml.launch.step import main
from tests.support.paths import PENGUINS_CONFIG


@pytest.mark.parametrize("flag, named", [(["--anomaly_policy", "sometimes"], "--anomaly_policy"),
                                         (["--key_column", "id"], "key_column")])
def test_a_bad_or_unknown_option_ends_the_step_naming_it_before_the_job_starts(tmp_path, flag, named):
    summary = tmp_path / "summary.json"
    code = main(["train_pipeline", "--summary_out", str(summary), "--",
                 "--config", PENGUINS_CONFIG, "--output_dir", str(tmp_path / "runs"), *flag])
    assert code == 2
    written = json.loads(summary.read_text())
    assert written["exit_code"] == 2 and named in written["error"], written
    assert not (tmp_path / "runs").exists()
