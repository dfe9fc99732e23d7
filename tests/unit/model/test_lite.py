"""TFLite export on a small real SavedModel whose vocabularies are hash tables filled from asset files, as
tf.Transform's are: the portable copy's tables answer in the TFLite interpreter, the parity record, quantization,
the push refusal under the `fail` policy, and the metrics."""
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_ml.model import lite
from beam_ml.model.push import push_refusal
from beam_ml.model.serving import serialized_examples

TYPES = {"island": "string", "mass": "float", "species": "string"}
ISLANDS = ["Biscoe", "Dream", "Torgersen"]
SPECIES = ["Adelie", "Gentoo", "Chinstrap"]


class _VocabModel(tf.Module):
    """Scores three classes from an island (a vocabulary with one OOV bucket) and a mass; the label's vocabulary
    has no OOV bucket (-1), like tf.Transform's."""

    def __init__(self, islands: str, species: str, declared_shape: bool = True):
        self.declared_shape = declared_shape
        self.islands = tf.saved_model.Asset(islands)
        self.species = tf.saved_model.Asset(species)
        whole_line, line_number = tf.lookup.TextFileIndex.WHOLE_LINE, tf.lookup.TextFileIndex.LINE_NUMBER
        self.island_ids = tf.lookup.StaticVocabularyTable(
            tf.lookup.TextFileInitializer(self.islands, tf.string, whole_line, tf.int64, line_number), 1)
        self.species_ids = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(self.species, tf.string, whole_line, tf.int64, line_number), -1)
        self.weights = tf.Variable(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))

    def _score(self, island, mass):
        ids = self.island_ids.lookup(island)
        if self.declared_shape:  # as beam_ml.model.export does: a lookup's rank is lost in conversion otherwise
            ids = tf.reshape(ids, [-1])
        features = tf.concat([tf.one_hot(ids, 4), mass[:, None] / 1000.0], axis=1)
        return {"outputs": tf.nn.softmax(tf.matmul(features, self.weights))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        parsed = tf.io.parse_example(examples, {"island": tf.io.FixedLenFeature([], tf.string, default_value=""),
                                                "mass": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})
        return self._score(parsed["island"], parsed["mass"])

    @tf.function(input_signature=[{"island": tf.TensorSpec([None], tf.string, name="island"),
                                   "mass": tf.TensorSpec([None], tf.float32, name="mass")}])
    def serve_raw(self, features):
        return self._score(features["island"], features["mass"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transformed_label(self, examples):
        species = tf.io.parse_example(examples, {"species": tf.io.FixedLenFeature([], tf.string)})["species"]
        return {"species": self.species_ids.lookup(species)}


def save_model(base, declared_shape: bool = True) -> str:
    (base / "islands.txt").write_text("\n".join(ISLANDS) + "\n")
    (base / "species.txt").write_text("\n".join(SPECIES) + "\n")
    module = _VocabModel(str(base / "islands.txt"), str(base / "species.txt"), declared_shape)
    path = str(base / "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve_examples,
                                                  "serving_raw": module.serve_raw,
                                                  "transformed_label": module.transformed_label})
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return save_model(tmp_path_factory.mktemp("vocab_model"))


def rows(n: int = 60) -> list[dict]:
    rng = np.random.default_rng(1)
    out = [{"island": (ISLANDS + ["Atlantis"])[i % 4], "mass": float(rng.uniform(3000, 6000)),
            "species": SPECIES[int(rng.integers(3))]} for i in range(n)]
    out[3]["mass"] = None  # a missing value: serving_default imputes it, serving_raw cannot take the row
    return out


def test_the_tflite_model_answers_as_the_saved_model_with_its_file_vocabularies(model_dir):
    record = lite.export_tflite(model_dir, serialized_examples(rows(), TYPES), quantization="dynamic")
    assert record["error"] is None and record["within_bound"] is True and record["refusal"] is None
    assert (record["rows"], record["raw_rows"]) == (60, 59)
    plain, dynamic = record["variants"]
    assert (plain["quantization"], plain["file"], dynamic["file"]) == ("none", "model.tflite", "model_dynamic.tflite")
    assert plain["max_abs_difference"] < 1e-6
    for variant in record["variants"]:
        assert os.path.getsize(os.path.join(model_dir, variant["file"])) == variant["bytes"] > 0
        accuracy = variant["metrics"]["accuracy"]
        assert 0 <= accuracy["saved_model"] <= 1 and accuracy["change"] == accuracy["tflite"] - accuracy["saved_model"]
    assert plain["metrics"]["accuracy"]["change"] == 0


def test_the_interpreter_reads_every_vocabulary_entry_and_the_oov_bucket(model_dir):
    """Were a table left empty (the bug the portable copy avoids), every island would take the OOV bucket."""
    examples = serialized_examples([{"island": i, "mass": 4000.0} for i in ISLANDS + ["Atlantis"]], TYPES)
    signatures = tf.saved_model.load(model_dir).signatures
    inputs = lite.parity_inputs(signatures, examples)
    with open(os.path.join(model_dir, lite.LITE_FILE), "rb") as f:  # written by the test before
        answers = lite.interpreter_outputs(f.read(), inputs)
    scores = answers["serving_raw"]["outputs"]
    assert len({tuple(np.round(row, 5)) for row in scores}) == 4
    np.testing.assert_allclose(scores, lite.saved_model_outputs(signatures, inputs)["serving_raw"]["outputs"],
                               atol=1e-6)


def test_a_converted_model_that_fails_on_one_row_is_caught(tmp_path):
    """Without a declared shape the lookup's rank is unknown to TFLite, whose concatenation then fails on a batch
    of one row only: the parity check answers one row alone too."""
    record = lite.export_tflite(save_model(tmp_path, declared_shape=False), serialized_examples(rows(), TYPES))
    assert record["within_bound"] is False and "failed to prepare" in record["error"]


def test_a_model_that_cannot_be_converted_is_flagged_or_refused_by_policy(tmp_path):
    class NoServing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return {"y": 2 * x}

    module = NoServing()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"double": module.double})
    flagged = lite.export_tflite(str(tmp_path / "1"), [], policy="flag")
    assert flagged["within_bound"] is False and "none of the signatures" in flagged["error"]
    assert flagged["refusal"] is None and push_refusal([], [flagged]) is None
    refused = lite.export_tflite(str(tmp_path / "1"), [], policy="fail")
    assert refused["refusal"].startswith("TFLite conversion failed: ValueError")
    assert push_refusal([{"ok": True}], [refused]) == refused["refusal"]
    assert push_refusal([{"ok": False, "error": "no"}], [refused]) == "infra validation failed: no"


def test_quality_is_accuracy_for_classes_and_auc_for_a_binary_score():
    assert lite.quality([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], np.array([0, 1, 1])) == {"accuracy": 2 / 3}
    binary = lite.quality([0.1, 0.4, 0.35, 0.8, 0.5], np.array([0, 0, 1, 1, -1]))  # -1: no label, left out
    assert binary == {"accuracy": 0.75, "auc": 0.75}
    assert lite.quality([0.3, 0.3], np.array([0, 1]))["auc"] == 0.5  # a tie counts half
    assert lite.quality([[1.5], [2.5]], np.array([3, 7])) == {}  # not a classifier's labels
