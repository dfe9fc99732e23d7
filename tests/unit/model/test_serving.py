"""TF Serving's side of a model on a small real SavedModel: requests built both ways and answered as TF Serving does,
the warm-up file in its own format, the model config its parser reads, and infra validation in a fresh process."""
import base64
import hashlib
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from beam_ml.model import serving
from beam_ml.model.infra import MODEL_SERVER_ENV, validate_here, validate_in_fresh_process, validate_servable

TYPES = {"island": "string", "mass": "float", "year": "int"}


class _Model(tf.Module):
    """Two signatures like an exported model's: tf.Examples (missing values default) and one tensor per column."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        parsed = tf.io.parse_example(examples, {
            "island": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "mass": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
            "year": tf.io.FixedLenFeature([], tf.int64, default_value=0)})
        return {"outputs": self._score(parsed["island"], parsed["mass"], parsed["year"])}

    @tf.function(input_signature=[{"island": tf.TensorSpec([None], tf.string, name="island"),
                                   "mass": tf.TensorSpec([None], tf.float32, name="mass"),
                                   "year": tf.TensorSpec([None], tf.int64, name="year")}])
    def serve_raw(self, features):
        return {"outputs": self._score(features["island"], features["mass"], features["year"])}

    def _score(self, island, mass, year):
        return tf.stack([mass / 1000.0, tf.cast(year - 2000, tf.float32), tf.cast(tf.strings.length(island),
                                                                                  tf.float32)], axis=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("model") / "1")
    module = _Model()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve_examples,
                                                  "serving_raw": module.serve_raw})
    return path


ROWS = [{"island": "Dream", "mass": 3500.0, "year": 2008}, {"island": "Biscoe", "mass": 4200.0, "year": 2009}]
EXPECTED = [[3.5, 8.0, 5.0], [4.2, 9.0, 6.0]]


def test_rest_and_grpc_requests_both_ways_are_answered_as_tf_serving_answers_them(model_dir):
    signatures = tf.saved_model.load(model_dir).signatures
    body = serving.rest_example_request(ROWS, TYPES)
    assert body["signature_name"] == "serving_default" and set(body["instances"][0]) == {"b64"}
    assert tf.train.Example.FromString(base64.b64decode(body["instances"][0]["b64"])).features.feature[
        "year"].int64_list.value == [2008]
    np.testing.assert_allclose(serving.answer_rest(signatures, body)["predictions"], EXPECTED, rtol=1e-6)
    np.testing.assert_allclose(serving.answer_rest(signatures, serving.rest_raw_request(ROWS))["predictions"],
                               EXPECTED, rtol=1e-6)
    for request in (serving.grpc_example_request(ROWS, TYPES, "penguins", version=1),
                    serving.grpc_raw_request(ROWS, TYPES, "penguins")):
        response = serving.answer_grpc(signatures, request)
        assert response.model_spec.name == "penguins"
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["outputs"]), EXPECTED, rtol=1e-6)
    missing = [{"island": "Dream", "mass": None, "year": 2008}]
    np.testing.assert_allclose(serving.answer_rest(signatures, serving.rest_example_request(missing, TYPES))[
        "predictions"], [[0.0, 8.0, 5.0]])  # an absent feature: the model's default
    with pytest.raises(ValueError, match="row 0 has no value for \\['mass'\\]"):
        serving.rest_raw_request(missing)
    with pytest.raises(ValueError, match="'colour' is not one of the model's raw features"):
        serving.rest_example_request([{"colour": "red"}], TYPES)


def test_warmup_requests_are_tf_serving_prediction_logs_and_the_config_parses(model_dir, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    examples = serving.serialized_examples(ROWS, TYPES)
    path = serving.write_warmup_requests(model_dir, examples, "penguins")
    assert path == os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
    [request] = serving.read_warmup_requests(model_dir)
    assert list(tf.make_ndarray(request.inputs["examples"])) == examples
    assert request.model_spec.signature_name == "serving_default" and request.model_spec.name == "penguins"
    assert serving.read_warmup_requests(str(tmp_path)) == []
    config = text_format.Parse(serving.model_config("penguins", "/srv/models/penguins"),
                               model_server_config_pb2.ModelServerConfig())
    [entry] = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("penguins", "/srv/models/penguins", "tensorflow")


def test_the_warmup_sample_is_the_same_rows_for_the_same_data_whatever_the_batching():
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.testing.util import assert_that, equal_to

    table = pa.table({"island": [[f"i{n}".encode()] for n in range(40)], "species": [[b"Adelie"]] * 40})
    whole, parts = table.to_batches()[0], table.to_batches(max_chunksize=7)
    expected = sorted(serving.sample_examples(whole, 40, without="species"),
                      key=lambda e: hashlib.sha256(e).digest(), reverse=True)[:5]
    assert all(b"Adelie" not in e for e in expected)
    for batches, rows in ((parts, 7), ([whole], 40)):
        with beam.Pipeline() as p:
            sample = p | beam.Create(batches) | serving.ExampleSample(rows, without="species")
            assert_that(sample | beam.Map(lambda s: s[:5]), equal_to([expected]))
    assert all(b"Adelie" in e for e in serving.sample_examples(whole, 40))  # a labelled sample keeps the label


def test_infra_validation_answers_the_warmup_requests_in_a_fresh_process(model_dir, tmp_path):
    serving.write_warmup_requests(model_dir, serving.serialized_examples(ROWS, TYPES), "penguins")
    result = validate_in_fresh_process(model_dir)
    assert result["ok"] is True and result["requests"] == 1 and result["load_seconds"] > 0
    assert result["latency_ms"]["max"] > 0 and result["peak_rss_mb"] > 100
    unwarmed = str(tmp_path / "unwarmed")
    tf.saved_model.save(_Model(), unwarmed)
    assert "no warm-up requests" in validate_here(unwarmed)["error"]
    broken = validate_in_fresh_process(str(tmp_path / "nothing-here"))
    assert broken["ok"] is False and broken["error"]


class _LabelRequired(tf.Module):
    """A serving_default that needs the label, which clients' requests (and the warm-up requests) lack."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        species = tf.io.parse_example(examples, {"species": tf.io.FixedLenFeature([], tf.string)})["species"]
        return {"outputs": tf.strings.length(species)}


@pytest.fixture
def stand_in_model_server(tmp_path, monkeypatch) -> str:
    """tests/support/model_server.py as `tensorflow_model_server`, named by $BEAM_ML_MODEL_SERVER."""
    script = tmp_path / "tensorflow_model_server"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.support.model_server "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv(MODEL_SERVER_ENV, str(script))
    return str(script)


def test_where_tf_serving_is_installed_infra_validation_asks_it_over_grpc_and_rest(model_dir, tmp_path,
                                                                                   stand_in_model_server):
    serving.write_warmup_requests(model_dir, serving.serialized_examples(ROWS, TYPES), "penguins")
    result = validate_servable(model_dir)
    assert result["ok"] is True and result["server"] == stand_in_model_server and result["requests"] == 1
    assert result["load_seconds"] > 0 and result["peak_rss_mb"] > 100
    assert result["latency_ms"]["grpc"]["max"] > 0 and result["latency_ms"]["rest"]["max"] > 0
    broken = str(tmp_path / "broken" / "1")
    module = _LabelRequired()
    tf.saved_model.save(module, broken, signatures={"serving_default": module.serve_examples})
    serving.write_warmup_requests(broken, serving.serialized_examples(ROWS, TYPES), "penguins")
    refused = validate_servable(broken)
    assert refused["ok"] is False and "did not load the model" in refused["error"] and "species" in refused["error"]
