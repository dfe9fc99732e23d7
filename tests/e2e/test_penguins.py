"""The whole pipeline on the real penguin data, through the job entry point."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from beam_ml.core.layout import RunLayout
from tests.support.browser import Browser
from tests.support.jobs import job_args, run_job
from tests.support.paths import PENGUINS_CSV

pytestmark = pytest.mark.e2e

UNLABELLED = [  # raw penguin rows without the label, as a client would send them
    {"island": b"Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0,
     "body_mass_g": 3750.0, "sex": b"male", "year": 2007},
    {"island": b"Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2, "flipper_length_mm": 211.0,
     "body_mass_g": 4500.0, "sex": b"female", "year": 2007},
    {"island": b"Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192.0,
     "body_mass_g": 3500.0, "sex": b"", "year": 2007},
]


def _example(row: dict) -> bytes:
    feature = {}
    for name, value in row.items():
        if isinstance(value, bytes):
            if value:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _records(pattern: str) -> list[bytes]:
    """tf.Examples in canonical bytes (map order in the files' serialization is not fixed)."""
    return sorted(tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
                  for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern))))


def test_two_runs_train_evaluate_push_and_compare_against_the_baseline_and_a_one_species_run_is_not_pushed(
        tmp_path, penguins_rows):
    code, first = run_job(*job_args(tmp_path, "first", leakage_key="island", export_tflite="true",
                                    tflite_quantization="dynamic"))
    assert code == 0, first.get("error")
    assert first["leakage"]["keys_in_several_splits"] == 3  # every island is in train and in eval
    run_dir = first["run_dir"]
    assert first["status"] == "succeeded" and first["blessed"] is True
    assert first["metrics"]["sparse_categorical_accuracy"] >= 0.95
    counts = first["counts"]
    assert counts["read"] == 344 and counts["dead_letter"] == 0
    assert sum(counts["splits"].values()) + counts["dead_letter"] == counts["read"]
    assert first["baseline_model"] is None and "value thresholds only" in first["evaluation_mode"]
    assert first["inputs"][0]["sha256"] and first["versions"]["apache-beam"] == "2.66.0"
    for path in ["statistics/Split-train/FeatureStats.pb", "statistics/Split-eval/FeatureStats.pb",
                 "schema/schema.pbtxt", "anomalies/Split-eval/SchemaDiff.pbtxt", "transform/transform_fn",
                 "transform/transformed_metadata", "model/serving/saved_model.pb", "evaluation/BLESSED"]:
        assert os.path.exists(os.path.join(run_dir, path)), path
    result = tfma.load_eval_result(os.path.join(run_dir, "evaluation"))
    assert {s for s, _ in result.slicing_metrics} >= {(), (("island", "Biscoe"),)}

    pushed = first["pushed_model_dir"]
    assert os.path.dirname(pushed) == str(tmp_path / "serving") and os.path.basename(pushed).isdigit()
    model = tf.saved_model.load(pushed)
    assert set(model.signatures) == {"serving_default", "transform_features", "transformed_label", "serving_raw"}
    by_example = model.signatures["serving_default"](
        examples=tf.constant([_example(r) for r in UNLABELLED]))["outputs"].numpy()
    raw = {k: tf.constant([r[k] for r in UNLABELLED]) for k in UNLABELLED[0]}
    raw["year"] = tf.cast(raw["year"], tf.int64)
    raw = {k: tf.cast(v, tf.float32) if v.dtype == tf.float64 else v for k, v in raw.items()}
    by_raw = model.signatures["serving_raw"](**raw)["outputs"].numpy()
    np.testing.assert_allclose(by_example[:2], by_raw[:2], rtol=1e-5)  # row 3: '' vs missing sex differ by design
    assert by_example.shape == (3, 3) and np.allclose(by_example.sum(axis=1), 1, atol=1e-4)
    _assert_tflite_answers_as_the_saved_model(first, by_example, raw)

    code, second = run_job(*job_args(tmp_path, "second"))
    assert code == 0, second.get("error")
    assert second["baseline_model"] == pushed and second["leakage"] is None
    assert "against the baseline" in second["evaluation_mode"]
    eval_config = tfma.load_eval_result(os.path.join(second["run_dir"], "evaluation")).config
    assert [s.name for s in eval_config.model_specs] == ["candidate", "baseline"]
    assert second["counts"] == first["counts"]  # same input and seed: same splits ...
    for split in ("train", "eval"):  # ... and the same transformed examples
        pattern = "transform/transformed_examples/Split-%s/*" % split
        assert _records(os.path.join(run_dir, pattern)) == _records(os.path.join(second["run_dir"], pattern))
    if second["blessed"]:
        assert int(os.path.basename(second["pushed_model_dir"])) > int(os.path.basename(pushed))

    labels = json.load(open(os.path.join(pushed, "assets.extra", "labels.json")))
    assert sorted(labels["classes"]) == ["Adelie", "Chinstrap", "Gentoo"] and labels["output_shape"] == [None, 3]
    assert labels["values"]["train"] == labels["values"]["eval"] == ["Adelie", "Chinstrap", "Gentoo"]
    probabilities = model.signatures["serving_raw"](**raw)["outputs"].numpy()
    assert labels["classes"][int(probabilities[0].argmax())] == "Adelie"  # a Torgersen male, 39.1 mm bill

    serving_before = sorted(os.listdir(tmp_path / "serving"))
    one_species = tmp_path / "adelie.csv"
    one_species.write_text("\n".join(penguins_rows[:1] + [r for r in penguins_rows[1:] if ",Adelie," in
                                                             f",{r},"]) + "\n")
    code, third = run_job(*job_args(tmp_path, "adelie-only", input=str(one_species)))
    assert code == 0, third.get("error")
    assert third["metrics"]["sparse_categorical_accuracy"] == 1.0  # perfect on its own eval split ...
    assert third["blessed"] is False and third["pushed_model_dir"] is None  # ... and not blessed
    reasons = " | ".join(third["threshold_failures"])
    assert "label 'species' has one value in the whole run ('Adelie')" in reasons
    assert "the train split lacks label values the baseline model's train split had: ['Chinstrap', 'Gentoo']" \
        in reasons
    assert sorted(os.listdir(tmp_path / "serving")) == serving_before


def _assert_tflite_answers_as_the_saved_model(record: dict, by_example, raw: dict) -> None:
    """The run's TFLite parity record, and the pushed model.tflite itself on rows the test makes."""
    lite = record["tflite"]
    assert lite["within_bound"] is True and lite["error"] is None and lite["rows"] == record["counts"]["splits"][
        "eval"] > lite["raw_rows"] > 90  # eval rows with a missing value are checked through serving_default only
    plain, dynamic = lite["variants"]
    assert plain["max_abs_difference"] <= 1e-4 and dynamic["quantization"] == "dynamic"
    for variant in (plain, dynamic):
        assert abs(variant["metrics"]["accuracy"]["change"]) <= 0.02
        assert os.path.getsize(os.path.join(record["pushed_model_dir"], variant["file"])) == variant["bytes"]
    with open(os.path.join(record["pushed_model_dir"], "model.tflite"), "rb") as f:
        interpreter = tf.lite.Interpreter(model_content=f.read())
    answers = interpreter.get_signature_runner("serving_default")(
        examples=np.array([_example(r) for r in UNLABELLED], dtype=object))["outputs"]
    np.testing.assert_allclose(answers, by_example, atol=1e-4)
    answers = interpreter.get_signature_runner("serving_raw")(**{k: v.numpy() for k, v in raw.items()})["outputs"]
    np.testing.assert_allclose(answers[:2], by_example[:2], atol=1e-4)


def test_malformed_rows_are_dead_lettered_on_two_worker_processes(tmp_path, penguins_rows):
    bad = ["Adelie,Torgersen,39.1,18.7", "Gentoo,Biscoe,forty,13.2,211,4500,female,2007",
           'Chinstrap,"Dream,46.5,17.9,192,3500,female,2007']
    lines = penguins_rows[:50] + [bad[0]] + penguins_rows[50:200] + bad[1:] + penguins_rows[200:]
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    code, manifest = run_job(*job_args(tmp_path, "bad_rows", input=str(data)),
                             "--direct_running_mode", "multi_processing", "--direct_num_workers", "2")
    assert code == 0, manifest.get("error")
    counts = manifest["counts"]
    assert counts["dead_letter"] == 3 and counts["read"] == 347
    assert counts["read"] == sum(counts["splits"].values()) + counts["dead_letter"]
    with open(os.path.join(manifest["run_dir"], "dead_letter", "dead_letter.jsonl")) as f:
        letters = sorted((json.loads(line) for line in f), key=lambda d: d["line"])
    assert [(d["line"], d["raw"]) for d in letters] == [(51, bad[0]), (202, bad[1]), (203, bad[2])]
    assert all(d["source"].endswith("data.csv") and d["reason"] for d in letters)


def test_failing_validation_stops_before_training(tmp_path, penguins_rows):
    import tensorflow_data_validation as tfdv
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_csv(PENGUINS_CSV))
    schema_path = tmp_path / "schema.pbtxt"
    tfdv.write_schema_text(schema, str(schema_path))
    skewed = [penguins_rows[0]] + [r.replace(",Dream,", ",Atlantis,") for r in penguins_rows[1:]]
    data = tmp_path / "skewed.csv"
    data.write_text("\n".join(skewed) + "\n")
    code, manifest = run_job(*job_args(tmp_path, "skewed", input=str(data), schema=str(schema_path)))
    assert code == 1
    assert manifest["status"] == "failed" and "anomalies" in manifest["error"]
    assert {(a["feature"], a["type"]) for a in manifest["anomalies"]} >= {
        ("island", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")}
    assert not os.path.exists(os.path.join(manifest["run_dir"], "model"))
    assert not os.path.exists(tmp_path / "serving") or os.listdir(tmp_path / "serving") == []
    assert manifest["pushed_model_dir"] is None
    with Browser() as browser:  # its report says where and why it stopped, offline
        load = browser.open("file://" + RunLayout(manifest["run_dir"]).report_file)
        assert load.console_errors == [] and len(load.requests) == 1
        assert "failed" in browser.text("#overview") and "data validation found" in browser.text("#overview")
        validation = browser.text("#validation")
        assert "island" in validation and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in validation
        assert "Atlantis" in validation  # TFDV's description names the unexpected value
        assert "No evaluation" in browser.text("#evaluation")
        shots = os.environ.get("REPORT_SCREENSHOTS") or str(tmp_path / "screenshots")
        browser.screenshot(os.path.join(os.path.abspath(shots), "failed-validation.png"), selector="#validation")


@pytest.mark.parametrize("drop,option", [("body_mass_g", "--input"), ("species", "--label_key")])
def test_a_missing_required_column_fails_at_start(tmp_path, penguins_rows, capsys, drop, option):
    header = penguins_rows[0].split(",")
    keep = [i for i, name in enumerate(header) if name != drop]
    data = tmp_path / "data.csv"
    data.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in penguins_rows) + "\n")
    code, manifest = run_job(*job_args(tmp_path, "missing", input=str(data)))
    assert code == 2 and manifest == {}
    err = capsys.readouterr().err
    assert option in err and repr(drop) in err
    assert not os.path.exists(tmp_path / "runs" / "missing")


def test_empty_input_is_a_clear_error(tmp_path, penguins_rows, capsys):
    data = tmp_path / "empty.csv"
    data.write_text(penguins_rows[0] + "\n")
    assert run_job(*job_args(tmp_path, "empty", input=str(data)))[0] == 2
    err = capsys.readouterr().err
    assert "--input" in err and "no data rows" in err
    assert run_job(*job_args(tmp_path, "none", input=str(tmp_path / "nothing*.csv")))[0] == 2
    assert "matches no files" in capsys.readouterr().err


@pytest.fixture
def job_service():
    """Beam's local portable job service on a free loopback port, stopped afterwards."""
    import socket
    import subprocess
    import sys
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("the job service did not start")
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_same_graph_runs_on_the_portable_runner(tmp_path, job_service):
    code, manifest = run_job(*job_args(tmp_path, "portable"), "--runner", "PortableRunner",
                             "--job_endpoint", job_service, "--environment_type", "LOOPBACK")
    assert code == 0, manifest.get("error")
    assert manifest["blessed"] is True and manifest["metrics"]["sparse_categorical_accuracy"] >= 0.95
    assert manifest["counts"]["splits"] == {"train": 243, "eval": 101}  # as on the in-process runner


def test_a_run_failing_in_training_keeps_the_counts_and_stage_it_reached(tmp_path):
    module = tmp_path / "diverging.py"
    module.write_text("from transforms.penguins import preprocessing_fn  # noqa: F401\n\n"
                      "def run_fn(fn_args):\n    raise RuntimeError('the model diverged')\n")
    code, manifest = run_job(*job_args(tmp_path, "diverging", module=str(module)))
    assert code == 1
    assert manifest["status"] == "failed" and "the model diverged" in manifest["error"]
    assert manifest["stage"] == "data checked" and manifest["failed_step"].startswith("TrainPipeline/Train/")
    assert manifest["counts"]["read"] == 344 and sum(manifest["counts"]["splits"].values()) == 344
    assert manifest["anomalies"] == [] and manifest["finished"]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 400 KB tmpfs: a real full disk for the run directory (needs the right to mount, as root has here)."""
    import subprocess
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_still_leaves_a_failed_record(tmp_path, small_filesystem, capsys):
    from jobs.train_pipeline import main
    code = main(["--config", "examples/penguins/config.yaml", "--output_dir", str(small_filesystem / "runs"),
                 "--serving_dir", str(tmp_path / "serving"), "--run_id", "full"])
    assert code == 1
    err = capsys.readouterr().err
    record_path = small_filesystem / "runs" / "full" / "run_manifest.json"
    on_disk = json.load(open(record_path)) if os.path.exists(record_path) else None
    if on_disk is None or on_disk["status"] != "failed":  # the disk was too full for it: printed instead
        record = json.loads(next(line for line in err.splitlines() if line.startswith("{")))
        assert "No space left on device" in record["record_error"] and "it is the JSON above" in err
    else:
        record = on_disk
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert record["failed_step"] and record["run_id"] == "full" and record["stage"] in ("started", "read",
                                                                                       "data checked")
    assert not [p for p in glob.glob(str(small_filesystem / "runs" / "full" / "*")) if ".tmp-" in p]
