import os
import pickle
import re
import subprocess
import sys

import pytest

from beam_ml.train import user_module
from tests.support.paths import ROOT

MODULE_SOURCE = """
import dataclasses

@dataclasses.dataclass
class Marker:
    value: int = 7

def preprocessing_fn(inputs):
    return inputs

def run_fn(fn_args):
    return Marker().value
"""


def test_a_py_module_travels_with_the_graph_and_loads_where_the_file_does_not_exist(tmp_path, monkeypatch):
    (tmp_path / "my_model.py").write_text(MODULE_SOURCE)
    monkeypatch.chdir(tmp_path)
    module = user_module.check("my_model.py")  # relative, as a user types it
    assert module.spec == str(tmp_path / "my_model.py")
    (tmp_path / "my_model.py").unlink()  # a worker has no copy of the file
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    code = ("import pickle, sys; m = pickle.loads(sys.stdin.buffer.read()); "
            "print(m.load().run_fn(None))")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(module), cwd=elsewhere,
                          capture_output=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "7"


def test_a_dotted_module_is_imported_by_name():
    module = user_module.check("transforms.penguins")
    assert module.source is None and callable(module.load().run_fn)


@pytest.mark.parametrize("spec, message", [("missing_file.py", "no module file"),
                                           ("no.such.module", "cannot import"),
                                           ("beam_ml.config", "does not define preprocessing_fn, run_fn")])
def test_bad_modules_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        user_module.check(spec)


PLAIN_KERAS_EXPORT = """
import tf_keras

def preprocessing_fn(inputs):
    return inputs

def run_fn(fn_args):
    model = tf_keras.Sequential([tf_keras.Input(shape=(2,)), tf_keras.layers.Dense(1)])
    model.save(fn_args.serving_model_dir, save_format="tf")  # the plain Keras way: no serving signatures of ours
"""


def test_a_model_saved_the_plain_keras_way_is_refused_right_after_run_fn_naming_the_export(tmp_path):
    """Without the signatures it fails as `transformed_label not found` deep inside TFMA; named here instead."""
    from beam_ml.train.trainer import FnArgs, RunTrainer
    module_file = tmp_path / "plain.py"
    module_file.write_text(PLAIN_KERAS_EXPORT)
    fn_args = FnArgs(train_files=(), eval_files=(), transform_output="", schema_path="",
                     serving_model_dir=str(tmp_path / "model"), model_run_dir=str(tmp_path / "logs"), label="y",
                     hyperparameters={}, seed=1)
    trainer = RunTrainer(user_module.UserModule.from_spec(str(module_file)), fn_args)
    with pytest.raises(RuntimeError) as error:
        list(trainer.process(None, [], []))
    message = str(error.value)
    assert "exported a model that evaluation and serving cannot use: no 'transformed_label' signature" in message
    # Keras numbers layer names per process: dense, dense_1, ...
    assert re.search(r"'serving_default' has no 'outputs' output \(it has \['dense(_\d+)?'\]\)", message)
    assert "beam_ml.model.export.export_serving_model(model, tf_transform_output, fn_args.label" in message
