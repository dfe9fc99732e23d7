"""Infra validation on a real penguin run: a model that TFMA evaluates and blesses, but whose serving signature
fails on a request as clients send it, is refused before push, and the run record says why."""
import os

import pytest

from tests.support.jobs import job_args, run_job

pytestmark = pytest.mark.e2e

# The penguin example, exported with a `serving_default` that wrongly requires the label: TFMA's eval examples carry
# it, so evaluation passes; clients' requests (and the warm-up requests) do not.
LABEL_REQUIRED = '''
import tensorflow as tf

from beam_ml.model import export
from beam_ml.model.artifact import SERVING_SIGNATURE
from transforms import penguins
from transforms.penguins import preprocessing_fn  # noqa: F401


def run_fn(fn_args):
    lenient_signatures = export.serving_signatures

    def label_required(model, tf_transform_output, label):
        signatures = lenient_signatures(model, tf_transform_output, label)
        lenient = signatures[SERVING_SIGNATURE]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(examples):
            labels = tf.io.parse_example(examples, {label: tf.io.FixedLenFeature([], tf.string)})[label]
            return lenient(examples=tf.strings.join([examples, tf.strings.substr(labels, 0, 0)]))  # needs them
        return {**signatures, SERVING_SIGNATURE: serve.get_concrete_function()}

    export.serving_signatures = label_required
    try:
        penguins.run_fn(fn_args)
    finally:
        export.serving_signatures = lenient_signatures
'''


def test_a_blessed_model_that_fails_a_real_request_is_not_pushed(tmp_path):
    module = tmp_path / "penguins_label_required.py"
    module.write_text(LABEL_REQUIRED)
    code, record = run_job(*job_args(tmp_path, "broken", module=str(module)))
    assert code == 0 and record["status"] == "succeeded", record.get("error")
    assert record["blessed"] is True and record["pushed_model_dir"] is None  # TFMA passed; serving did not
    infra = record["infra_validation"]
    assert infra["ok"] is False and "species" in infra["error"] and infra["load_seconds"] > 0
    assert record["push"].startswith("infra validation failed: ") and "species" in record["push"]
    assert not os.path.exists(tmp_path / "serving") or not [v for v in os.listdir(tmp_path / "serving")
                                                            if v.isdigit()]
    assert [s["stage"] for s in record["stages"]][-2:] == ["servable", "succeeded"]
