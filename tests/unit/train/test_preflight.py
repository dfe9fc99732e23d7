"""--validate_only on real data: a sample through the real parser, types decided by a few odd values, and the
preprocessing_fn run on the sample with the label among its outputs (issue 22, point 6)."""
import json

from tests.support.jobs import job_args, run_job
from tests.support.paths import PENGUINS_CSV

DROPS_THE_LABEL = """
from transforms.penguins import preprocessing_fn as penguins_fn

def preprocessing_fn(inputs):
    outputs = penguins_fn(inputs)
    outputs.pop("species")
    return outputs

def run_fn(fn_args):
    raise AssertionError("never trained")
"""

FAILS_ON_DATA = """
import tensorflow as tf

def preprocessing_fn(inputs):  # traces fine; real penguins have bills of 50 mm and more
    bill = tf.reshape(tf.sparse.to_dense(inputs["bill_length_mm"]), [-1])
    with tf.control_dependencies([tf.debugging.assert_less(bill, 50.0, message="bill too long")]):
        return {"species": inputs["species"], "bill": tf.identity(bill)}

def run_fn(fn_args):
    raise AssertionError("never trained")
"""


def test_validate_only_runs_the_preprocessing_fn_on_a_sample(tmp_path, capsys):
    code, _ = run_job(*job_args(tmp_path, "check"), "--validate_only")
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["sample_rows"] == 344 and report["sample_dead_letters"] == 0
    assert "species" in report["transformed_features"] and report["type_doubts"] == []
    assert not (tmp_path / "runs").exists()


def test_a_preprocessing_fn_that_drops_the_label_is_named_at_validate_only(tmp_path, capsys):
    module = tmp_path / "drops.py"
    module.write_text(DROPS_THE_LABEL)
    code, _ = run_job(*job_args(tmp_path, "check", module=str(module)), "--validate_only")
    err = capsys.readouterr().err
    assert code == 2
    assert "--module: preprocessing_fn does not output the label 'species' (its outputs: bill_depth_mm," in err


def test_a_preprocessing_fn_failing_on_real_rows_is_named_at_validate_only(tmp_path, capsys):
    module = tmp_path / "fails.py"
    module.write_text(FAILS_ON_DATA)
    code, _ = run_job(*job_args(tmp_path, "check", module=str(module)), "--validate_only")
    err = capsys.readouterr().err
    assert code == 2 and "--module: preprocessing_fn fails on a sample of 344 rows: " in err and "bill too long" in err


def test_a_column_typed_string_by_a_few_odd_values_is_reported_with_its_lines(tmp_path, capsys):
    lines = open(PENGUINS_CSV).read().splitlines()
    lines[40] = lines[40].replace(",2007", ",2007?")  # one odd year among 344
    data = tmp_path / "odd.csv"
    data.write_text("\n".join(lines) + "\n")
    types = {"species": "string", "island": "string", "sex": "string"}  # the rest inferred
    code, _ = run_job(*job_args(tmp_path, "check", input=str(data), column_types=json.dumps(types)),
                      "--validate_only")
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["columns"]["year"] == "string"
    assert report["type_doubts"] == [{"file": str(data), "column": "year", "numbers": 343, "odd_count": 1,
                                      "odd_values": [{"line": 41, "value": "2007?"}]}]
