"""Both jobs launched as the Flex Template launcher runs them; batch prediction checked against the SavedModel."""
import csv
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_ml.model.artifact import raw_column_types
from tests.support.jobs import flex_launch
from tests.support.serving_checks import assert_serving_requests_give_batch_predictions

pytestmark = pytest.mark.e2e

UNLABELLED = os.path.join("examples", "penguins", "unlabelled", "penguins.csv")
TYPES = {"island": "string", "sex": "string", "year": "int", "penguin_id": "string"}  # the rest are floats


def _example(row: dict) -> bytes:
    """A tf.Example built by hand from a CSV row (empty and NA cells are missing features)."""
    feature = {}
    for name, text in row.items():
        if text in ("", "NA"):
            continue
        kind = TYPES.get(name, "float")
        if kind == "string":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
        elif kind == "int":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(text)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _read_jsonl(pattern: str) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(pattern)) for line in open(path)]


def test_train_job_launched_like_the_flex_launcher(launched_penguins):
    bucket, manifest = launched_penguins
    assert manifest["status"] == "succeeded" and manifest["blessed"] is True
    assert manifest["pushed_model_dir"].startswith(os.path.join(bucket, "serving", "penguins"))
    assert manifest["config"]["train_min_ram"] == "4GB" and manifest["config"]["run_id"] == "launch-1"


def test_batch_predict_launched_like_the_flex_launcher_matches_the_saved_model(launched_penguins):
    bucket, train_manifest = launched_penguins
    proc = flex_launch("batch_predict", bucket)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.join(bucket, "runs", "penguins_predict", "launch-1")
    with open(os.path.join(run_dir, "run_manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["status"] == "succeeded"
    assert manifest["model_dir"] == train_manifest["pushed_model_dir"]
    assert manifest["counts"] == {"read": 344, "predicted": 344, "dead_letter": 0}

    predictions = {p["key"]: p["outputs"] for p in _read_jsonl(os.path.join(run_dir, "predictions", "*.jsonl"))}
    with open(os.path.join(bucket, UNLABELLED)) as f:
        rows = list(csv.DictReader(f))
    assert sorted(predictions) == sorted(r["penguin_id"] for r in rows)
    model = tf.saved_model.load(manifest["model_dir"])
    direct = model.signatures["serving_default"](
        examples=tf.constant([_example(r) for r in rows]))["outputs"].numpy()
    np.testing.assert_allclose(np.array([predictions[r["penguin_id"]] for r in rows]), direct, rtol=1e-5,
                               atol=1e-6)
    types = raw_column_types(manifest["model_dir"])
    typed = [{c: None if v in ("", "NA") else int(v) if types[c] == "int" else float(v) if types[c] == "float"
              else v for c, v in row.items() if c in types} for row in rows[:50]]
    assert_serving_requests_give_batch_predictions(manifest["model_dir"], typed,
                                                   [predictions[r["penguin_id"]] for r in rows[:50]], "penguins",
                                                   "species", complete_rows=(40, 50))
    classes = json.load(open(os.path.join(manifest["model_dir"], "assets.extra", "labels.json")))["classes"]
    named = {p["key"]: p["class"] for p in _read_jsonl(os.path.join(run_dir, "predictions", "*.jsonl"))}
    assert named == {r["penguin_id"]: classes[int(direct[i].argmax())] for i, r in enumerate(rows)}
    assert set(named.values()) == {"Adelie", "Chinstrap", "Gentoo"}
    with open(os.path.join(run_dir, "report", "index.html")) as f:  # the job's report counts them
        report = f.read()
    for name in set(named.values()):
        share = sum(1 for c in named.values() if c == name) / len(named)
        assert f"<td>{name}</td><td>{sum(1 for c in named.values() if c == name)}</td><td>{share:.1%}</td>" in report


def test_bad_rows_are_dead_lettered_and_the_counts_add_up(launched_penguins, tmp_path):
    from jobs.batch_predict import main
    bucket, _ = launched_penguins
    with open(os.path.join(bucket, UNLABELLED)) as f:
        lines = f.read().splitlines()
    bad = lines[:6] + ["P9998,Dream,not-a-number,17.9,192,3500,male,2007",  # unparsable float
                       ",Biscoe,46.1,13.2,211,4500,female,2007",  # no key
                       "P9999,Biscoe,46.1"]  # too few columns
    (tmp_path / "in.csv").write_text("\n".join(bad) + "\n")
    code = main(["--input", str(tmp_path / "in.csv"), "--key_column", "penguin_id",
                 "--serving_dir", os.path.join(bucket, "serving", "penguins"),
                 "--output_dir", str(tmp_path / "runs"), "--run_id", "bad"])
    assert code == 0
    with open(tmp_path / "runs" / "bad" / "run_manifest.json") as f:
        counts = json.load(f)["counts"]
    assert counts == {"read": 8, "predicted": 5, "dead_letter": 3}
    reasons = [d["reason"] for d in _read_jsonl(str(tmp_path / "runs" / "bad" / "dead_letter" / "*.jsonl"))]
    assert len(reasons) == 3 and any("key column" in r for r in reasons)


def test_no_pushed_model_fails_at_launch_naming_the_option(tmp_path, capsys):
    from jobs.batch_predict import main
    code = main(["--input", UNLABELLED, "--key_column", "penguin_id", "--serving_dir", str(tmp_path / "empty"),
                 "--output_dir", str(tmp_path / "runs")])
    assert code == 2 and "--serving_dir: no model version has been pushed" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["STREAMING_INSERTS", "FILE_LOADS"])
def test_predictions_are_also_written_to_bigquery(launched_penguins, bq_emulator, tmp_path, method):
    """Against the BigQuery emulator (FILE_LOADS stages files in the GCS emulator)."""
    import uuid

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    from jobs.batch_predict import main
    project = bq_emulator["project"]
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=bq_emulator["rest"]))
    dataset = "predictions_" + uuid.uuid4().hex[:8]
    client.create_dataset(dataset)
    gcs = storage.Client(project=project, credentials=AnonymousCredentials())
    if gcs.lookup_bucket("beam-tmp") is None:
        gcs.create_bucket("beam-tmp")
    bucket, _ = launched_penguins
    code = main(["--input", os.path.join(bucket, UNLABELLED), "--key_column", "penguin_id",
                 "--serving_dir", os.path.join(bucket, "serving", "penguins"), "--output_dir", str(tmp_path / "runs"),
                 "--run_id", "bq", "--bigquery_table", f"{project}:{dataset}.penguins",
                 "--bigquery_method", method, f"--project={project}", "--temp_location=gs://beam-tmp/tmp"])
    assert code == 0
    in_files = {p["key"]: p["outputs"] for p in _read_jsonl(str(tmp_path / "runs" / "bq" / "predictions" / "*.jsonl"))}
    in_table = {r["key"]: (list(r["outputs"]), r["class"])
                for r in client.query(f"SELECT key, outputs, class FROM `{project}.{dataset}.penguins`").result()}
    assert len(in_table) == 344 and in_table.keys() == in_files.keys()
    for key, outputs in in_files.items():
        np.testing.assert_allclose(in_table[key][0], outputs, rtol=1e-6)
    assert {name for _, name in in_table.values()} == {"Adelie", "Chinstrap", "Gentoo"}


def test_prediction_rows_take_string_outputs_and_failed_batches_keep_their_rows():
    import base64

    from tensorflow_serving.apis import prediction_log_pb2

    from beam_ml.predict.pipeline import failed_batch_dead_letters, prediction_row

    log = prediction_log_pb2.PredictionLog()
    outputs = log.predict_log.response.outputs
    outputs["classes"].CopyFrom(tf.make_tensor_proto(np.array([[b"Adelie", b"Gentoo"]])))
    outputs["scores"].CopyFrom(tf.make_tensor_proto(np.array([[0.9, 0.1]], dtype=np.float32)))
    row = prediction_row(("P1", log))
    assert row["key"] == "P1" and row["classes"] == ["Adelie", "Gentoo"] and "class" not in row

    log.predict_log.response.outputs["outputs"].CopyFrom(tf.make_tensor_proto(np.array([[0.2, 0.7, 0.1]])))
    assert prediction_row(("P1", log), ("Adelie", "Chinstrap", "Gentoo"))["class"] == "Chinstrap"
    assert "class" not in prediction_row(("P1", log), ("Adelie", "Gentoo"))  # not this model's classes
    log.predict_log.response.outputs.pop("outputs")
    assert row["scores"] == pytest.approx([0.9, 0.1])
    assert json.loads(json.dumps(row)) == row  # JSON- and BigQuery-ready

    failure = ([("P1", b"\x01\x02"), ("P2", b"\x03")], (ValueError, "ValueError('bad input')", "traceback"))
    letters = list(failed_batch_dead_letters(failure))
    assert [json.loads(d.raw)["key"] for d in letters] == ["P1", "P2"]
    assert base64.b64decode(json.loads(letters[0].raw)["example_base64"]) == b"\x01\x02"
    assert letters[0].reason == "inference failed: ValueError('bad input')"


def test_an_input_without_the_models_features_is_refused_unless_allowed(launched_penguins, tmp_path, capsys):
    """Training refuses missing columns, and so does prediction: predicting with features missing (imputed by the
    transform) changes the predictions, so it takes --allow_missing_features (issue 22, point 3)."""
    from jobs.batch_predict import main
    bucket, _ = launched_penguins
    with open(os.path.join(bucket, UNLABELLED)) as f:
        rows = list(csv.DictReader(f))[:20]
    with open(tmp_path / "in.csv", "w", newline="") as f:
        kept = [c for c in rows[0] if c not in ("island", "bill_length_mm")]
        writer = csv.DictWriter(f, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    args = ["--input", str(tmp_path / "in.csv"), "--key_column", "penguin_id",
            "--serving_dir", os.path.join(bucket, "serving", "penguins"), "--output_dir", str(tmp_path / "runs")]
    assert main(args + ["--run_id", "refused"]) == 2
    assert "--input: lacks the model's features ['bill_length_mm', 'island']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main(args + ["--run_id", "allowed", "--allow_missing_features", "true"]) == 0
    with open(tmp_path / "runs" / "allowed" / "run_manifest.json") as f:
        assert json.load(f)["counts"] == {"read": 20, "predicted": 20, "dead_letter": 0}
