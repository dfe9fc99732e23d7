"""What run_job guarantees whatever goes wrong: a bad output or serving directory is named before any work, a run
directory belongs to one launch, and a failed run always has a record (issue 22, point 4)."""
import json
import threading

import pytest

from beam_ml.core.errors import ConfigError
from beam_ml.core.run import RunContext, RunManifest
from beam_ml.launch.run import record_failure
from tests.support.jobs import job_args, run_job


def test_an_output_dir_that_is_a_file_is_named_before_any_work(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a directory")
    code, _ = run_job(*job_args(tmp_path, "on-a-file"))
    assert code == 2 and "--output_dir: cannot write runs to" in capsys.readouterr().err


def test_a_serving_dir_under_a_file_is_named_at_launch_not_at_push(tmp_path, capsys):
    (tmp_path / "serving").write_text("not a directory")
    code, _ = run_job(*job_args(tmp_path, "serving-on-a-file"), "--validate_only")
    assert code == 2 and "--serving_dir: cannot push models to" in capsys.readouterr().err


def test_a_run_directory_belongs_to_one_launch_even_when_launches_race(tmp_path):
    runs = [RunContext.start("train_pipeline", str(tmp_path / "runs"), "same-id", {}) for _ in range(8)]
    claimed, refused = [], []

    def claim(run):
        try:
            run.claim()
            claimed.append(run)
        except ConfigError as e:
            refused.append(e)

    threads = [threading.Thread(target=claim, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 1 and len(refused) == 7
    assert all(e.option == "run_id" and "already exists" in str(e) for e in refused)
    with pytest.raises(ConfigError, match="^--run_id: .* already exists"):
        RunContext.start("train_pipeline", str(tmp_path / "runs"), "same-id", {})


def test_a_run_whose_record_cannot_be_written_still_reports_it(tmp_path, capsys):
    (tmp_path / "gone").write_text("the run directory was replaced by a file")
    manifest = RunManifest(str(tmp_path / "gone"), {"run_id": "r"})
    record, written = record_failure(manifest, RuntimeError("the pipeline failed"))
    assert not written and record["status"] == "failed" and record["error"] == "RuntimeError: the pipeline failed"
    printed = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert printed["run_id"] == "r" and printed["record_error"] and printed["status"] == "failed"


def test_a_failed_record_the_run_wrote_itself_is_kept(tmp_path):
    manifest = RunManifest(str(tmp_path), {"run_id": "r"})
    manifest.write("failed", error="split(s) eval received no rows", counts={"read": 3})
    record, written = record_failure(manifest, RuntimeError("RunFailed"))
    assert written and record["error"] == "split(s) eval received no rows" and record["counts"] == {"read": 3}
