"""What run_job guarantees whatever goes wrong: a bad output or serving directory is named before any work, a run
directory belongs to one launch, and a failed run always has a record (issue 22, point 4)."""
import json
import os
import threading

import pytest

from beam_ml.core.errors import ConfigError
from beam_ml.core.run import MANIFEST_FILE, RunContext, RunManifest
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


def _race_for_one_run_id(output_dir):
    runs = [RunContext("train_pipeline", "same-id", f"{output_dir}/same-id", "now", {}) for _ in range(8)]
    claimed, refused = [], []

    def claim(run):
        try:
            run.claim(run.manifest(launch=id(run)).running())
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
    return claimed[0]


def test_a_run_directory_belongs_to_one_launch_even_when_launches_race(tmp_path):
    winner = _race_for_one_run_id(str(tmp_path / "runs"))
    record = json.load(open(tmp_path / "runs" / "same-id" / MANIFEST_FILE))
    assert record["launch"] == id(winner)  # the record is the winner's, written when it claimed the directory
    with pytest.raises(ConfigError, match="^--run_id: .* already exists"):
        RunContext.start("train_pipeline", str(tmp_path / "runs"), "same-id", {})


def test_on_gcs_a_run_id_belongs_to_one_launch_even_when_launches_race(gcs_emulator):
    from google.cloud import storage
    from tests.support import emulators
    emulators.ensure_bucket("runs", gcs_emulator["url"])
    winner = _race_for_one_run_id("gs://runs/train")
    record = json.loads(storage.Client().bucket("runs").blob(f"train/same-id/{MANIFEST_FILE}").download_as_bytes())
    assert record["launch"] == id(winner)


def test_a_run_shows_as_running_from_its_start_until_it_ends(tmp_path):
    run = RunContext.start("train_pipeline", str(tmp_path), "r", {"input": "x.csv"})
    manifest = run.manifest(counts={"read": 0})
    run.claim(manifest.running())
    record = json.load(open(manifest.path))  # what a run killed now would leave
    assert record["status"] == "running" and record["finished"] is None and record["started"] == run.started
    assert record["launcher"]["pid"] == os.getpid() and record["counts"] == {"read": 0}
    manifest.write("succeeded", counts={"read": 3})
    record = json.load(open(manifest.path))
    assert record["status"] == "succeeded" and record["finished"] and "launcher" not in record


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


def test_a_huge_value_is_cut_in_the_record_and_in_messages_with_its_length(tmp_path, capsys):
    huge = "x" * 10_000_000
    manifest = RunManifest(str(tmp_path), {"run_id": "r", "config": {"input_query": huge}})
    manifest.write("succeeded", counts={"read": 1})
    assert os.path.getsize(manifest.path) < 10_000
    recorded = json.load(open(manifest.path))["config"]["input_query"]
    assert recorded.startswith("xxxx") and recorded.endswith("… [10,000,000 characters, cut to 4,000]")
    code, _ = run_job(*job_args(tmp_path, "huge", anomaly_policy=huge[:60_000]))  # its message quotes it
    err = capsys.readouterr().err
    assert code == 2 and "--anomaly_policy: 'xxx" in err and len(err) < 10_000
    assert "characters, cut to 4,000]" in err
    code, _ = run_job(*job_args(tmp_path, "huge", input="/data/" + huge + ".csv"))  # refused before any glob
    err = capsys.readouterr().err
    assert code == 2 and "--input: is 10,000,010 characters long; at most 65,536" in err
