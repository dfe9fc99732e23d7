"""What a job prints: a line per stage from the run record's stages, and the human summary at the end."""
import io
import json

from beam_ml.core.run import RunContext
from beam_ml.launch.console import StageWatcher, stage_line, summary_lines

COUNTS = {"read": 347, "dead_letter": 3, "splits": {"train": 240, "eval": 104}}


def test_stage_lines_name_the_stage_what_it_did_and_how_long_it_took():
    assert stage_line("read", 4.0, {"counts": COUNTS}) == (
        "  read          347 records; split: train 240, eval 104; dead letters 3 (87 records/s)  [4 s]")
    assert stage_line("data checked", 2.4, {"anomalies": [{"feature": "x"}]}) == (
        "  data checked  statistics, schema and validation: 1 anomalies  [2 s]")
    assert stage_line("trained", 19.2, {}) == "  trained       [19 s]"
    assert stage_line("started", None, {"run_id": "r", "run_dir": "/runs/r"}) == "  started       run r → /runs/r"


def test_the_tflite_stage_line_gives_each_variant_and_whether_it_is_over_the_bound():
    variant = {"file": "model.tflite", "bytes": 51200, "max_abs_difference": 1.2e-07,
               "metrics": {"accuracy": {"saved_model": 0.99, "tflite": 0.99, "change": 0.0}}}
    record = {"tflite": {"variants": [variant], "rows": 101, "bound": 1e-4, "within_bound": True}}
    assert stage_line("tflite", 2.0, record) == (
        "  tflite        model.tflite 50 KiB, max difference 1.2e-07, accuracy 0.9900 (+0.0000) on 101 eval rows"
        "  [2 s]")
    over = {"tflite": {**record["tflite"], "within_bound": False, "refusal": "differs",
                       "variants": [{**variant, "max_abs_difference": 0.5}]}}
    assert stage_line("tflite", 2.0, over).endswith("max difference 0.5, accuracy 0.9900 (+0.0000) on 101 eval rows "
                                                    "— OVER the bound 0.0001, not pushed  [2 s]")
    failed = {"tflite": {"variants": [], "error": "ValueError: no", "within_bound": False, "refusal": None}}
    assert stage_line("tflite", 2.0, failed) == "  tflite        failed: ValueError: no  [2 s]"


def test_the_watcher_prints_each_stage_once_as_the_record_reaches_it(tmp_path):
    run = RunContext.start("train_pipeline", str(tmp_path), "r", {})
    manifest = run.manifest(counts=None)
    run.claim(manifest.running())
    out = io.StringIO()
    watcher = StageWatcher(lambda: json.loads((tmp_path / "r" / "run_manifest.json").read_text()), out=out)
    watcher.poll()
    manifest.write_progress("read", counts=COUNTS)
    watcher.poll()
    watcher.poll()
    manifest.write_progress("data checked", anomalies=[])
    manifest.write("succeeded", counts=COUNTS)
    watcher.poll()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["started", "read", "data"]  # the end is the summary's
    assert "347 records" in lines[1] and "no anomalies" in lines[2]


def test_the_watcher_survives_a_record_it_cannot_read():
    out = io.StringIO()

    def unreadable():
        raise ValueError("half a record")

    with StageWatcher(unreadable, out=out, interval=0.01):
        pass
    assert out.getvalue() == ""


def test_the_summary_says_how_the_run_ended_and_why_it_was_or_was_not_blessed():
    blessed = summary_lines({"job": "train_pipeline", "status": "succeeded", "run_id": "r",
                             "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:30+00:00",
                             "counts": COUNTS, "blessed": True, "evaluation_mode": "value thresholds only",
                             "pushed_model_dir": "/serving/p/1"})
    assert blessed == ["succeeded in 30 s: run r",
                       "  counts: 347 records; split: train 240, eval 104; dead letters 3",
                       "  blessed: every threshold passed; value thresholds only", "  pushed: /serving/p/1"]
    refused = summary_lines({"job": "train_pipeline", "status": "succeeded", "run_id": "r", "blessed": False,
                             "threshold_failures": ["accuracy = 0.5 fails {lower_bound: 0.9}"]})
    assert refused[1:] == ["  not blessed: accuracy = 0.5 fails {lower_bound: 0.9}", "  not pushed"]
    assert summary_lines({"job": "batch_predict", "status": "succeeded", "run_id": "p",
                          "counts": {"read": 5, "predicted": 4, "dead_letter": 1}})[1] == (
        "  counts: 5 records; predicted 4; dead letters 1")
